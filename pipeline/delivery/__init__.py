"""The delivery path: intake, the mapping, planning, the tenants' lanes, CRM steps, outlets."""
