"""The student model: PSPNet pixel-embedding networks by name (``create_student``), open_clip-style configs."""

from clips4.model.backbones import find_imagenet_weights
from clips4.model.factory import (
    add_model_config,
    build_student,
    config_from_dict,
    create_student,
    get_model_config,
    list_models,
    resolve_config,
)
from clips4.model.pspnet import IMAGENET_MEAN, IMAGENET_STD, Student, StudentConfig

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Student",
    "StudentConfig",
    "add_model_config",
    "build_student",
    "config_from_dict",
    "create_student",
    "find_imagenet_weights",
    "get_model_config",
    "list_models",
    "resolve_config",
]
