"""The agency API: keys that belong to one tenant, and JSON endpoints under /api/v1/ for the
tenant's connections (sellers), their access tokens and invitation links (docs/api.md)."""
