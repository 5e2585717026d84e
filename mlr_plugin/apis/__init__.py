from .inference import MultiLabelInferencer  # noqa: F401
