"""Example rule: jobs whose inputs are big go to a bigger destination.

In job_conf.xml (the params besides `function` are this rule's own arguments):

    <destination id="by_size" runner="dynamic">
        <param id="function">by_input_size</param>
        <param id="big_input_bytes">1073741824</param>
        <param id="big_destination">slurm_big</param>
        <param id="small_destination">local</param>
    </destination>
    ...
    <tool id="sort_lines" destination="by_size"/>

`input_size` is the total size in bytes of the job's input datasets (`input_datasets` lists
them one by one: name, id, size, format).
"""


def by_input_size(input_size, big_input_bytes="1073741824", big_destination="slurm_big",
                  small_destination="local"):
    # Params from job_conf.xml arrive as text.
    return big_destination if input_size > int(big_input_bytes) else small_destination
