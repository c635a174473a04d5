"""The composition root: the `llm-jobs` command starts and wires every process.

Each command imports its process package inside the command, so a process loads only its
own tasks and the metrics directory is chosen before prometheus_client is imported.
"""
