# AdamW + OneCycle (TRM-ML recipe): max lr 5e-4, 40 epochs, stepped per iteration.
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=1e-4),
)

param_scheduler = [
    dict(type='PlainOneCycleLR', eta_max=5e-4, by_epoch=True, begin=0, end=40,
         convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=40, val_interval=5)
val_cfg = dict()
test_cfg = dict()

auto_scale_lr = dict(base_batch_size=128, enable=False)
