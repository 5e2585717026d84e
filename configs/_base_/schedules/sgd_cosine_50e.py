# SGD + 1 warm-up epoch at a constant 1e-5 + cosine over the remaining epochs, stepped
# per epoch (DualCoOp / DualCoOp++ recipe). Children change lr with
# `optim_wrapper.optimizer.lr = ...` and keep the warm-up at 1e-5 by also setting
# `param_scheduler[0].factor = 1e-5 / lr`.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.002, momentum=0.9, weight_decay=5e-4),
)

# mmengine's ConstantLR undoes its factor at its last step, so it must span 2 epochs to
# leave epoch 1 at the full lr (end=1 would keep 1e-5 for the whole run).
param_scheduler = [
    dict(type='ConstantLR', factor=1e-5 / 0.002, begin=0, end=2, by_epoch=True),
    dict(type='CosineAnnealingLR', T_max=49, eta_min=0.0, begin=1, end=50,
         by_epoch=True),
]

train_cfg = dict(by_epoch=True, max_epochs=50, val_interval=5)
val_cfg = dict()
test_cfg = dict()

# The paper's batch size; enable to scale lr linearly with the real batch size.
auto_scale_lr = dict(base_batch_size=32, enable=False)
