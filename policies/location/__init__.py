"""Location facts: IP to country, network owner and jurisdiction; egress and placement."""

from policies.location.doctor import DoctorConfig, GeoConfig, load_doctor_config, run_doctor
from policies.location.egress import EgressDecision, decide_egress
from policies.location.errors import (
    GeoDatabaseError,
    GeoUpdateError,
    JurisdictionDataError,
    LocationError,
    MalformedAddress,
    PlacementConfigError,
    StaleGeoDatabase,
    UnresolvableHost,
)
from policies.location.geodata import default_geo_dir, geo_info, update_geo
from policies.location.locator import GeoDatabaseInfo, Location, Locator, open_geo_database
from policies.location.mmdb import MmdbWriter, UInt16, UInt32, UInt64
from policies.location.owners import NetworkOwner, OwnerTable, default_owners_path
from policies.location.placement import (
    CheckResult,
    Endpoint,
    PlacementConfig,
    ProcessorMemory,
    placement_record,
    run_placement_checks,
    worst_status,
)
from policies.location.watch import PlacementWatch

__all__ = [
    "CheckResult",
    "DoctorConfig",
    "EgressDecision",
    "Endpoint",
    "GeoConfig",
    "GeoDatabaseError",
    "GeoDatabaseInfo",
    "GeoUpdateError",
    "JurisdictionDataError",
    "Location",
    "LocationError",
    "Locator",
    "MalformedAddress",
    "MmdbWriter",
    "NetworkOwner",
    "OwnerTable",
    "PlacementConfig",
    "PlacementConfigError",
    "PlacementWatch",
    "ProcessorMemory",
    "StaleGeoDatabase",
    "UInt16",
    "UInt32",
    "UInt64",
    "UnresolvableHost",
    "decide_egress",
    "default_geo_dir",
    "default_owners_path",
    "geo_info",
    "load_doctor_config",
    "open_geo_database",
    "placement_record",
    "run_doctor",
    "run_placement_checks",
    "update_geo",
    "worst_status",
]
