# MKT stage 2 (prompt tuning): AdamW lr 1e-3, weight decay 0.05, batch 64, 4 epochs of
# cosine decay to 1e-8 stepped per iteration, no warm-up. Only the prompt contexts train.
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
)

param_scheduler = [
    dict(type='WarmupCosineLR', warmup=0, eta_min_ratio=1e-8 / 1e-3, by_epoch=True,
         begin=0, end=4, convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=4, val_interval=1)
val_cfg = dict()
test_cfg = dict()

auto_scale_lr = dict(base_batch_size=64, enable=False)
