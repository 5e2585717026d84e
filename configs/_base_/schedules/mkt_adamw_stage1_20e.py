# MKT stage 1: AdamW lr 1e-3, weight decay 0.05 (none on 1-D weights: biases, norms),
# layer-wise lr decay 0.65 (MKTClassifier.get_layer_depth), batch 64, 20 epochs: linear
# warm-up from 0 over 2 epochs, then cosine to 1e-6, both stepped per iteration. The
# minimum scales with each layer's lr (MKT: lr = (min + (max - min) * cos) * scale).
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.65, flat_decay_mult=0.0),
)

# MKT's closed form (mlr_plugin.engine.WarmupCosineLR): lr(i) = base * (i / W) during the
# warm-up, then base * (r + (1 - r) * (1 + cos(pi * progress)) / 2), r = 1e-6 / 1e-3.
param_scheduler = [
    dict(type='WarmupCosineLR', warmup=2, eta_min_ratio=1e-6 / 1e-3, by_epoch=True,
         begin=0, end=20, convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=20, val_interval=5)
val_cfg = dict()
test_cfg = dict()

auto_scale_lr = dict(base_batch_size=64, enable=False)
