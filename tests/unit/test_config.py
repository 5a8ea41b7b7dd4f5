"""muleteer/config.py: the `galaxy:` section of galaxy.yml."""
import os

import pytest

from muleteer.config import ConfigError, load_config


def test_defaults_are_filled_and_resolved_against_the_files_directory(write, tmp_path):
    config = load_config(write("galaxy.yml", "uwsgi:\n  master: true\n"))
    root = str(tmp_path)
    assert config.config_file == os.path.join(root, "galaxy.yml")
    assert config.root == root
    assert config.database_connection == f"sqlite:///{root}/database/universe.sqlite"
    assert config.database_engine_options == {}
    assert config.job_config_file == f"{root}/job_conf.xml"
    assert config.tool_path == f"{root}/tools"
    assert config.job_working_directory == f"{root}/database/jobs_directory"
    assert config.new_file_path == f"{root}/database/tmp"
    assert config.environment_setup_file == ""  # unset stays unset, not the root directory
    assert config.job_handler_monitor_sleep == 1.0
    assert config.job_runner_monitor_sleep == 1.0
    assert config.exit_code_file_wait == 5.0
    assert config.max_request_body == 1024 * 1024
    assert config.log_level == "INFO"


@pytest.mark.parametrize("text", ["", "galaxy:\n", "galaxy: {}\n", "# only a comment\n"])
def test_empty_file_or_section_means_all_defaults(write, tmp_path, text):
    config = load_config(write("galaxy.yml", text))
    assert config.tool_path == f"{tmp_path}/tools"
    assert config.max_request_body == 1024 * 1024


def test_relative_paths_resolve_against_galaxy_yml_not_the_cwd(write, tmp_path, monkeypatch):
    path = write("conf/galaxy.yml", """
        galaxy:
          database_connection: sqlite:///db/jobs.sqlite
          job_config_file: ../job_conf.xml
          tool_path: my/tools
          job_working_directory: /abs/jobs
          new_file_path: tmp
          environment_setup_file: env.sh
    """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    conf_dir = str(tmp_path / "conf")
    config = load_config(os.path.relpath(path))  # a relative config path is made absolute
    assert config.config_file == path
    assert config.root == conf_dir
    assert config.database_connection == f"sqlite:///{conf_dir}/db/jobs.sqlite"
    assert os.path.normpath(config.job_config_file) == f"{tmp_path}/job_conf.xml"
    assert config.tool_path == f"{conf_dir}/my/tools"
    assert config.job_working_directory == "/abs/jobs"
    assert config.new_file_path == f"{conf_dir}/tmp"
    assert config.environment_setup_file == f"{conf_dir}/env.sh"


@pytest.mark.parametrize("url", [
    "sqlite:////var/lib/muleteer/jobs.sqlite",  # absolute: four slashes
    "sqlite:///:memory:",
    "sqlite://",
    "postgresql://muleteer:secret@db.example.org:5432/muleteer",
])
def test_other_database_urls_are_left_alone(write, url):
    config = load_config(write("galaxy.yml", f"galaxy:\n  database_connection: '{url}'\n"))
    assert config.database_connection == url


def test_config_file_from_environment(write, tmp_path, monkeypatch):
    path = write("site/galaxy.yml", "galaxy:\n  log_level: DEBUG\n")
    monkeypatch.setenv("MULETEER_CONFIG", path)
    config = load_config()
    assert config.log_level == "DEBUG"
    assert config.root == str(tmp_path / "site")


def test_typed_values_and_overrides(write):
    path = write("galaxy.yml", """
        galaxy:
          job_handler_monitor_sleep: 2      # an int where a float is expected is fine
          exit_code_file_wait: 0.5
          max_request_body: 4096
          database_engine_options: {pool_size: 5}
          log_level: WARNING
    """)
    config = load_config(path, overrides={"max_request_body": 10, "log_level": "ERROR"})
    assert config.job_handler_monitor_sleep == 2.0
    assert isinstance(config.job_handler_monitor_sleep, float)
    assert config.exit_code_file_wait == 0.5
    assert config.max_request_body == 10
    assert config.database_engine_options == {"pool_size": 5}
    assert config.log_level == "ERROR"


@pytest.mark.parametrize("name", ["bogus_setting", "job_handler_count", "tool_data_path"])
def test_unknown_setting_names_file_and_setting(write, name):
    path = write("galaxy.yml", f"galaxy:\n  tool_path: tools\n  {name}: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert path in str(info.value)
    assert f"galaxy.{name}" in str(info.value)
    assert "unknown setting" in str(info.value)


def test_unknown_override_is_an_error_too(write):
    path = write("galaxy.yml", "galaxy: {}\n")
    with pytest.raises(ConfigError, match=r"galaxy\.nope: unknown setting"):
        load_config(path, overrides={"nope": 1})


@pytest.mark.parametrize("name, value", [
    ("job_handler_monitor_sleep", "'fast'"),
    ("job_handler_monitor_sleep", "true"),
    ("job_handler_monitor_sleep", "[1]"),
    ("max_request_body", "1.5"),
    ("max_request_body", "'1024'"),
    ("max_request_body", "true"),
    ("tool_path", "5"),
    ("tool_path", "[a, b]"),
    ("log_level", "{a: 1}"),
    ("database_engine_options", "[1, 2]"),
    ("database_engine_options", "'pool_size=5'"),
])
def test_wrong_type(write, name, value):
    path = write("galaxy.yml", f"galaxy:\n  {name}: {value}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert path in str(info.value)
    assert f"galaxy.{name}: expected" in str(info.value)


@pytest.mark.parametrize("name, value", [
    ("job_handler_monitor_sleep", "0"),
    ("job_runner_monitor_sleep", "-1"),
    ("exit_code_file_wait", "-0.5"),
    ("max_request_body", "0"),
    ("max_request_body", "-100"),
])
def test_non_positive_number(write, name, value):
    path = write("galaxy.yml", f"galaxy:\n  {name}: {value}\n")
    with pytest.raises(ConfigError, match=rf"galaxy\.{name}: must be a positive"):
        load_config(path)


@pytest.mark.parametrize("value", [".nan", ".inf"])
def test_nan_and_infinity_are_not_positive_numbers(write, value):
    path = write("galaxy.yml", f"galaxy:\n  job_handler_monitor_sleep: {value}\n")
    with pytest.raises(ConfigError, match=r"galaxy\.job_handler_monitor_sleep"):
        load_config(path)


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.yml")
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_config(path)
    assert path in str(info.value)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_config(str(tmp_path))
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("text", [
    "galaxy: [unclosed\n",
    "galaxy:\n  tool_path: tools\n   job_working_directory: x\n",
    "galaxy: {a: 1\n",
    "galaxy:\n\ttool_path: tools\n",  # a tab indents nothing in YAML
    "---\ngalaxy: {}\n---\nuwsgi: {}\n",
])
def test_not_yaml(write, text):
    path = write("galaxy.yml", text)
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(path)
    assert path in str(info.value)


def test_binary_file(tmp_path):
    path = tmp_path / "galaxy.yml"
    path.write_bytes(b"\x80\x81\x82\xfe binary, not YAML\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("- a list\n- not sections\n", "line 1: expected a top-level section"),
    ("just a string\n", "line 1: expected a top-level section"),
    ("galaxy: [tool_path, tools]\n", "`galaxy:` must be a mapping"),
    ("galaxy: tools\n", "`galaxy:` must be a mapping"),
])
def test_wrong_document_shape(write, text, message):
    path = write("galaxy.yml", text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert path in str(info.value)


def test_the_repositorys_galaxy_yml_loads(repo):
    config = load_config(os.path.join(repo, "galaxy.yml"))
    assert config.root == repo
    assert config.database_connection == f"sqlite:///{repo}/database/universe.sqlite"
    assert os.path.isfile(config.job_config_file)
    assert os.path.isdir(config.tool_path)
    assert config.job_working_directory.startswith(repo + os.sep)
    # The uwsgi: section is uWSGI's (tests/integration reads it back with --show-config).
    assert config.job_handler_monitor_sleep == 1.0
