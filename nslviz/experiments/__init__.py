"""Experiments: one module per notebook and CLI command, each a function that both call.

    spiral                   the spiral toy, MN Fig. 3 (notebook 01, `python -m nslviz spiral`)
    knn                      kNN as multi-task learning: the derivation's checks and the 1-D toy
                             (notebook 02, `python -m nslviz knn-toy`)
    compare                  image runs side by side: methods of MN Table 1/3, NSL Table 4 variants
                             (notebooks 03, 04, 07, `python -m nslviz compare`)
    neighbors                the learned neighbors of trained runs, MN sec. 4.2 (notebook 05,
                             `python -m nslviz neighbors`)
    regression_table         MN Table 2's cross-validation (notebook 06, `python -m nslviz regress`)
    implicit_regularization  NSL sec. 5.1's gradient flows (notebook 08, `python -m nslviz implicit-reg`)
    residual_ode             NSL sec. 5.2, stacks of NSL layers as ODE solvers (notebook 08,
                             `python -m nslviz residual-ode`)
    higher_order             NSL sec. 6, one layer against a linear, an even and a quadratic target
                             (notebook 08, `python -m nslviz higher-order`)
    race                     why the induced dictionary learns, or not, while the backbone trains
                             (notebook 09, benchmarks/mn_race.py, `python -m nslviz race`)
    few_shot                 NSL Table 6 (notebook 10, `python -m nslviz few-shot`)
    estimators               the scikit-learn estimators against scikit-learn's MLPs and kNN
                             (notebook 11, benchmarks/bench_estimators.py, `python -m nslviz estimators`)
    heads                    MN's head alone on fixed features, and its S and T sweeps, MN Fig. 8
                             (notebook 03, `python -m nslviz heads`)

The engine they share lives in `nslviz.training` (config, trainer, run directories, loops); the pure
functions of trained models in `nslviz.analysis`.
"""
