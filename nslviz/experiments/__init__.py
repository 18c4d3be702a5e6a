"""Experiments: one module per notebook and CLI command, each a function that both call.

    race   why the induced dictionary learns, or not, while the backbone trains (notebook 09,
           benchmarks/mn_race.py, python -m nslviz race)
"""
