"""Running a tool's command in its container (Galaxy's docker destination params).

The params are declared here once; every runner declares them (its SPEC), because the job
script itself runs the container, so local, slurm, pbs and drmaa jobs all can.
"""
from __future__ import annotations

from muleteer.runner_spec import Param

CONTAINER_PARAMS = (
    Param("docker_enabled", bool, False, "run tools that name a container in it"),
    Param("docker_cmd", str, "docker", "the container command (podman works: it takes "
          "docker's arguments)"),
    Param("docker_sudo", bool, False, "run the container command through docker_sudo_cmd"),
    Param("docker_sudo_cmd", str, "sudo", "the sudo command for docker_sudo"),
    Param("docker_volumes", str, "$defaults", "volumes as SOURCE:TARGET[:ro|rw], comma "
          "separated, with $working_directory, $job_directory, $tool_directory, "
          "$default_file_path; $defaults: Galaxy's default set"),
    Param("docker_net", str, "none", "the container's network (--net)"),
    Param("docker_memory", str, "", "the container's memory limit (--memory)"),
    Param("docker_auto_rm", bool, True, "remove the container when the job ends (--rm)"),
    Param("docker_set_user", str, "$UID", "run as this user in the container (--user); "
          "$UID: the job's own; empty: the image's"),
    Param("docker_run_extra_arguments", str, "", "more arguments for `run`"),
    Param("docker_default_container_id", str, "", "the image for tools that name none"),
    Param("docker_container_id_override", str, "", "the image for every tool"),
    Param("require_container", bool, False, "refuse tools that have no container to run in"),
)
