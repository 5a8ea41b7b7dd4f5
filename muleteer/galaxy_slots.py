"""GALAXY_SLOTS, GALAXY_MEMORY_MB and GALAXY_MEMORY_MB_PER_SLOT in a job script, as Galaxy's
job scripts set them: read at run time from what the scheduler gave the job (a job learns
its cores and memory only on its node), else from what its destination grants (the local
runner's `local_slots`), else one slot and no memory figure.

Tools read them (`\\${GALAXY_SLOTS:-1}` in a command) to size their threads and heaps.
GALAXY_SLOTS_CONFIGURED is set when the figure came from the scheduler or the
destination, not the default, as Galaxy does.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Granted:
    """What a destination itself grants a job, for runners whose scheduler says nothing
    (the local runner); None: not said."""
    slots: int | None = None
    memory_mb: int | None = None


# Slurm (also under its TORQUE wrappers: the job runs as a Slurm job), Grid Engine, PBS.
_SLOTS = r'''if [ -n "$SLURM_CPUS_ON_NODE" ]; then
    GALAXY_SLOTS="$SLURM_CPUS_ON_NODE"
elif [ -n "$SLURM_NTASKS" ] || [ -n "$SLURM_CPUS_PER_TASK" ]; then
    GALAXY_SLOTS=$(( ${SLURM_NTASKS:-1} * ${SLURM_CPUS_PER_TASK:-1} ))
elif [ -n "$NSLOTS" ]; then
    GALAXY_SLOTS="$NSLOTS"
elif [ -n "$PBS_NCPUS" ]; then
    GALAXY_SLOTS="$PBS_NCPUS"
elif [ -n "$PBS_NUM_PPN" ]; then
    GALAXY_SLOTS="$PBS_NUM_PPN"
elif [ -n "$PBS_NP" ]; then
    GALAXY_SLOTS="$PBS_NP"'''

# Slurm gives MB per node or per CPU; Grid Engine the granted h_vmem per slot (e.g. 2G).
_MEMORY = r'''if [ -n "$SLURM_MEM_PER_NODE" ]; then
    GALAXY_MEMORY_MB="$SLURM_MEM_PER_NODE"
elif [ -n "$SLURM_MEM_PER_CPU" ]; then
    GALAXY_MEMORY_MB_PER_SLOT="$SLURM_MEM_PER_CPU"
elif [ -n "$SGE_HGR_h_vmem" ]; then
    case "$SGE_HGR_h_vmem" in
        *[Gg]) GALAXY_MEMORY_MB_PER_SLOT=$(( ${SGE_HGR_h_vmem%?} * 1024 )) ;;
        *[Mm]) GALAXY_MEMORY_MB_PER_SLOT=${SGE_HGR_h_vmem%?} ;;
        *[Kk]) GALAXY_MEMORY_MB_PER_SLOT=$(( ${SGE_HGR_h_vmem%?} / 1024 )) ;;
        *) GALAXY_MEMORY_MB_PER_SLOT=$(( ${SGE_HGR_h_vmem%.*} / 1048576 )) ;;
    esac 2>/dev/null'''


def statements(granted: Granted = Granted()) -> list[str]:
    """Shell lines that set and export the three variables (and GALAXY_SLOTS_CONFIGURED)."""
    slots = [_SLOTS]
    if granted.slots:
        slots.append(f"else\n    GALAXY_SLOTS={int(granted.slots)}\nfi")
    else:
        slots.append('else\n    GALAXY_SLOTS=1\n    unset GALAXY_SLOTS_CONFIGURED\nfi')
    memory = [_MEMORY]
    if granted.memory_mb:
        memory.append(f"else\n    GALAXY_MEMORY_MB={int(granted.memory_mb)}")
    memory.append("fi")
    return [
        "export GALAXY_SLOTS_CONFIGURED=1",
        "\n".join(slots),
        "export GALAXY_SLOTS",
        "unset GALAXY_MEMORY_MB GALAXY_MEMORY_MB_PER_SLOT",
        "\n".join(memory),
        'if [ -z "$GALAXY_MEMORY_MB_PER_SLOT" ] && [ -n "$GALAXY_MEMORY_MB" ]; then\n'
        '    GALAXY_MEMORY_MB_PER_SLOT=$(( GALAXY_MEMORY_MB / GALAXY_SLOTS ))\n'
        'elif [ -z "$GALAXY_MEMORY_MB" ] && [ -n "$GALAXY_MEMORY_MB_PER_SLOT" ]; then\n'
        '    GALAXY_MEMORY_MB=$(( GALAXY_MEMORY_MB_PER_SLOT * GALAXY_SLOTS ))\n'
        'fi',
        '[ "${GALAXY_MEMORY_MB:-0}" -gt 0 ] 2>/dev/null && export GALAXY_MEMORY_MB '
        '|| unset GALAXY_MEMORY_MB',
        '[ "${GALAXY_MEMORY_MB_PER_SLOT:-0}" -gt 0 ] 2>/dev/null && '
        'export GALAXY_MEMORY_MB_PER_SLOT || unset GALAXY_MEMORY_MB_PER_SLOT',
    ]
