"""Business logic for tenants, sellers and grants. Views, admin, commands and tasks call these."""
