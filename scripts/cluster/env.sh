# shellcheck shell=sh
# Source this (". scripts/cluster/env.sh") before starting anything that talks
# to the dev/CI clusters brought up by scripts/cluster/up: a uWSGI mule, a
# webless handler, pytest. POSIX sh, so any shell can source it.
#
# It only sets variables; it starts nothing. The defaults match the scripts';
# set MULETEER_CLUSTER_STATE / MULETEER_TORQUE_DIR beforehand to override.

MULETEER_CLUSTER_STATE=${MULETEER_CLUSTER_STATE:-/var/lib/muleteer-cluster}
MULETEER_TORQUE_DIR=${MULETEER_TORQUE_DIR:-/opt/muleteer-cluster/torque}
# The PBS runner's bin dir: qsub/qstat/qdel (Slurm's TORQUE wrappers) next to
# sbatch/squeue/scontrol/scancel/srun/salloc. Deliberately NOT put on PATH:
# its qsub/qstat would hide Grid Engine's /usr/bin/qsub/qstat.
MULETEER_TORQUE_BIN=${MULETEER_TORQUE_BIN:-$MULETEER_TORQUE_DIR/bin}

# Slurm clients (sbatch, squeue, the wrappers' Perl API) read this config.
# /etc/slurm/slurm.conf also points at it, unless someone else owns that file.
SLURM_CONF=${SLURM_CONF:-$MULETEER_CLUSTER_STATE/slurm/etc/slurm.conf}

# Grid Engine and its DRMAA library.
SGE_ROOT=${SGE_ROOT:-/var/lib/gridengine}
SGE_CELL=${SGE_CELL:-default}
DRMAA_LIBRARY_PATH=${DRMAA_LIBRARY_PATH:-/usr/lib/gridengine-drmaa/lib/libdrmaa.so.1.0}

# libdrmaa pulls in libjemalloc, which needs static TLS that glibc does not
# reserve by default: without this, `import drmaa` fails to dlopen it. It must
# be in the environment when the process starts (setting os.environ later is
# too late), so export it before launching uWSGI/pytest.
case ":${GLIBC_TUNABLES:-}:" in
    *glibc.rtld.optional_static_tls=*) ;;
    ::) GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384 ;;
    *) GLIBC_TUNABLES=$GLIBC_TUNABLES:glibc.rtld.optional_static_tls=16384 ;;
esac

export MULETEER_CLUSTER_STATE MULETEER_TORQUE_DIR MULETEER_TORQUE_BIN SLURM_CONF \
    SGE_ROOT SGE_CELL DRMAA_LIBRARY_PATH GLIBC_TUNABLES
