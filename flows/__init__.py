"""activation-lab's Prefect flows and its command line: wiring only, the work is in `tasks`."""
