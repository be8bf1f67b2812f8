"""The typed settings model, loaded from YAML with environment overrides.

Every field carries a title, a description and bounds, so the same models give the
JSON schema (``gateway config-schema``) and the error messages. A bad config stops
start-up with a :class:`ConfigError` that names the key path and the reason.

Environment overrides: ``GATEWAY__SECTION__KEY=value`` (double underscores separate
the path, values are parsed as YAML scalars), plus ``GATEWAY_DATA_DIR``.

The models live in modules by concern (``cameras``, ``video``, ``relay``, ``cascade``,
``service``; ``settings`` holds the whole and its loading); all are importable from here.
"""

from gateway.config.base import (
    DEFAULT_CONFIG,
    ID_PATTERN,
    ConfigError,
    Id,
    Model,
)
from gateway.config.cameras import (
    CameraConfig,
    DiscoverySettings,
    OnvifEndpoint,
    StreamSettings,
)
from gateway.config.cascade import (
    GB_ID,
    CascadeSettings,
    Gb28181Settings,
    GbUpstream,
    ParentSettings,
)
from gateway.config.relay import (
    IceServer,
    RelaySettings,
    SfuSettings,
    WhipTarget,
)
from gateway.config.service import (
    AuditSettings,
    AuthSettings,
    ExportSettings,
    LinkageMatch,
    LinkageRule,
    LogSettings,
    MqttSettings,
    ServerSettings,
)
from gateway.config.settings import (
    Settings,
    apply_env,
    load_settings,
    parse_settings,
)
from gateway.config.video import (
    DiagnosisCamera,
    DiagnosisKind,
    DiagnosisSettings,
    DiagnosisThresholds,
    MotionSettings,
    Polygon,
    RecordingSettings,
    ReportSettings,
    RetentionSettings,
    Unit,
    ZoneName,
)

__all__ = [
    "DEFAULT_CONFIG",
    "GB_ID",
    "ID_PATTERN",
    "AuditSettings",
    "AuthSettings",
    "CameraConfig",
    "CascadeSettings",
    "ConfigError",
    "DiagnosisCamera",
    "DiagnosisKind",
    "DiagnosisSettings",
    "DiagnosisThresholds",
    "DiscoverySettings",
    "ExportSettings",
    "Gb28181Settings",
    "GbUpstream",
    "IceServer",
    "Id",
    "LinkageMatch",
    "LinkageRule",
    "LogSettings",
    "Model",
    "MotionSettings",
    "MqttSettings",
    "OnvifEndpoint",
    "ParentSettings",
    "Polygon",
    "RecordingSettings",
    "RelaySettings",
    "ReportSettings",
    "RetentionSettings",
    "ServerSettings",
    "Settings",
    "SfuSettings",
    "StreamSettings",
    "Unit",
    "WhipTarget",
    "ZoneName",
    "apply_env",
    "load_settings",
    "parse_settings",
]
