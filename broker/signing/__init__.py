"""XML-DSig for the SPEC §2 profile: trust, sender verification, countersignature, signing."""
