"""Assets shipped with mlr_plugin: the demo world's tiny CLIP weights and their card."""
