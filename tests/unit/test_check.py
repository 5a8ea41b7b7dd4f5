"""`python -m check` (run by run.sh before uWSGI): it checks the configuration, and on
a fresh install creates the first admin and prints, once, how to log in."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def check(config):
    return subprocess.run([sys.executable, "-m", "check", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_first_run_prints_how_to_log_in_once(tmp_path):
    config = tmp_path / "galaxy.yml"
    config.write_text(f"galaxy:\n  job_config_file: {REPO}/job_conf.xml\n  tool_path: {REPO}/tools\n"
                      "  admin_users: boss@example.org\n")
    first = check(config)
    assert first.returncode == 0, first.stderr
    assert "created the first admin user. Log in as boss@example.org with password " in first.stdout
    assert "API key" in first.stdout
    second = check(config)
    assert second.returncode == 0 and "first admin" not in second.stdout


def test_a_bad_configuration_is_one_clear_line_and_exit_1(tmp_path):
    config = tmp_path / "galaxy.yml"
    config.write_text("galaxy:\n  job_handler_monitor_sleep: -1\n")
    result = check(config)
    assert result.returncode == 1
    assert "galaxy.job_handler_monitor_sleep: must be a positive number" in result.stderr
