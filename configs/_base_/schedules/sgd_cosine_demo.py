# A short CPU schedule for the demo world: SGD, cosine over 4 epochs (1000 iterations of
# batch 32 on the 8000 train images), per iteration; train + test fit in 3 minutes on 2
# CPU cores. lr 0.03: at 0.01 the contexts are still far from converged this early.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.03, momentum=0.9, weight_decay=5e-4),
)
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=0, end=4,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=4, val_interval=4)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=32, enable=False)
