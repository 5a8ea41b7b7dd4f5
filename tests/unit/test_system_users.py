"""muleteer/system_users.py: which system account a user's jobs run as
(real_system_username), and the settings that choose it."""
import os
import pwd

import pytest

from muleteer.config import ConfigError, load_config
from muleteer.system_users import (NoSystemAccount, account_name, parse_mapping,
                                   system_account)


def test_user_email_takes_the_local_part():
    assert account_name("Alice@Example.org", "user_email") == "alice"
    with pytest.raises(NoSystemAccount, match="not a system account name"):
        account_name("a;rm -rf@example.org", "user_email")


def test_root_system_accounts_and_nobody_are_refused():
    with pytest.raises(NoSystemAccount, match="below real_system_min_uid"):
        system_account("root@example.org", "user_email", 1000)
    with pytest.raises(NoSystemAccount, match="below real_system_min_uid"):
        system_account("daemon@example.org", "user_email", 1000)
    if any(e.pw_name == "nobody" for e in pwd.getpwall()):
        with pytest.raises(NoSystemAccount, match="nobody"):
            system_account("nobody@example.org", "user_email", 1000)
    with pytest.raises(NoSystemAccount, match="no system account 'nosuchaccount9'"):
        system_account("nosuchaccount9@example.org", "user_email", 1000)


def test_a_mapping_file(tmp_path):
    mapping = tmp_path / "accounts"
    mapping.write_text("# site accounts\nAlice@Example.org  root  # an admin's mistake\n"
                       "\nbob@example.org daemon\n")
    assert parse_mapping(str(mapping)) == {"alice@example.org": "root", "bob@example.org": "daemon"}
    assert account_name("alice@example.org", str(mapping)) == "root"
    with pytest.raises(NoSystemAccount, match="not in the account mapping"):
        account_name("carol@example.org", str(mapping))
    with pytest.raises(NoSystemAccount, match="below"):  # mapped, but root: still refused
        system_account("alice@example.org", str(mapping), 1000)


@pytest.mark.parametrize("text, words", [
    ("alice@example.org\n", "line 1: expected `email account`"),
    ("alice@example.org alice extra\n", "line 1"),
    ("alice alice\n", "line 1"),
    ("# ok\nalice@example.org Al!ce\n", "line 2"),
    ("a@x.org a\nA@x.org b\n", "line 2: a@x.org is mapped twice"),
])
def test_a_bad_mapping_file_stops_start_up_naming_its_line(tmp_path, text, words):
    (tmp_path / "accounts").write_text(text)
    (tmp_path / "galaxy.yml").write_text("galaxy:\n  real_system_username: accounts\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "galaxy.yml"))
    assert "real_system_username" in str(info.value) and words in str(info.value)
    assert os.path.join(str(tmp_path), "accounts") in str(info.value)


def test_the_settings(tmp_path):
    scripts = ("  external_chown_script: sudo -n /opt/muleteer/scripts/external_chown_script.py\n"
               "  external_runjob_script: sudo -n /opt/muleteer/scripts/external_runjob.py\n")
    (tmp_path / "galaxy.yml").write_text("galaxy:\n  real_system_username: user_email\n"
                                         "  real_system_min_uid: 2000\n" + scripts)
    config = load_config(str(tmp_path / "galaxy.yml"))
    assert (config.real_system_username, config.real_system_min_uid) == ("user_email", 2000)
    assert config.external_runjob_script.endswith("external_runjob.py")
    # Jobs as their users need the scripts that hand them over and run them.
    (tmp_path / "galaxy.yml").write_text("galaxy:\n  real_system_username: user_email\n")
    with pytest.raises(ConfigError, match="set external_chown_script and external_runjob_script"):
        load_config(str(tmp_path / "galaxy.yml"))
    (tmp_path / "galaxy.yml").write_text("galaxy:\n  external_chown_script: no-such-sudo x\n")
    with pytest.raises(ConfigError, match="external_chown_script: no-such-sudo is not a program"):
        load_config(str(tmp_path / "galaxy.yml"))
    (tmp_path / "galaxy.yml").write_text("galaxy:\n  outputs_to_working_directory: false\n")
    with pytest.raises(ConfigError, match="outputs_to_working_directory: false is not available"):
        load_config(str(tmp_path / "galaxy.yml"))
    (tmp_path / "galaxy.yml").write_text("galaxy:\n  real_system_username: username\n")
    with pytest.raises(ConfigError, match="no separate username"):
        load_config(str(tmp_path / "galaxy.yml"))
    (tmp_path / "galaxy.yml").write_text("galaxy:\n  real_system_username: missing-file\n")
    with pytest.raises(ConfigError, match="is not a file"):
        load_config(str(tmp_path / "galaxy.yml"))
    assert load_config(str(tmp_path / "galaxy.yml"), {"real_system_username": ""}) \
        .real_system_username == ""
