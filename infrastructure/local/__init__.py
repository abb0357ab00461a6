"""Local services for development and tests: the configured ones, stand-ins for the rest."""

from infrastructure.local.launcher import Mode, ServiceStatus
from infrastructure.local.probes import LocalServiceError, Refused
from infrastructure.local.services import LocalServices

__all__ = ["LocalServiceError", "LocalServices", "Mode", "Refused", "ServiceStatus"]
