"""Configuration: :class:`Settings` composes one section per stage or concern (:mod:`.sections`)."""

from vectune.config.sections import (
                                     BUNDLED_MODEL,
                                     TEXT_FIELD_PRESETS,
                                     CollectionConfig,
                                     FullConfig,
                                     GateConfig,
                                     LabelsConfig,
                                     LockConfig,
                                     ModelConfig,
                                     NegativesConfig,
                                     ObserveConfig,
                                     OfflineTeacher,
                                     OpenAITeacher,
                                     PairsConfig,
                                     PathsConfig,
                                     PromoteConfig,
                                     QdrantConfig,
                                     QueryConfig,
                                     ReadConfig,
                                     ServeConfig,
                                     TeacherConfig,
)
from vectune.config.settings import (
                                     FLAT,
                                     NOT_DECISIVE,
                                     OPENAI_TEACHER_ENV,
                                     SECTIONS,
                                     Settings,
                                     env_name,
                                     flat_name,
                                     load_settings,
                                     route,
)

__all__ = ["BUNDLED_MODEL", "FLAT", "NOT_DECISIVE", "OPENAI_TEACHER_ENV", "SECTIONS", "TEXT_FIELD_PRESETS",
           "CollectionConfig", "FullConfig", "GateConfig", "LabelsConfig", "LockConfig", "ModelConfig",
           "NegativesConfig", "ObserveConfig", "OfflineTeacher", "OpenAITeacher", "PairsConfig", "PathsConfig",
           "PromoteConfig", "QdrantConfig", "QueryConfig", "ReadConfig", "ServeConfig", "Settings", "TeacherConfig",
           "env_name", "flat_name", "load_settings", "route"]
