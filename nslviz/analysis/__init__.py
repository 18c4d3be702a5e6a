"""Analysis of trained models: what the finetuning does, what the learned neighbors and masks are.
Submodules are imported on use (`from nslviz.analysis.finetuning import finetuning_effect`)."""
