"""The training engine: configuration, the trainer, run directories, data, optimisers, distributed runs
and the small in-memory loops the experiments (`nslviz.experiments`) use."""
