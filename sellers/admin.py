"""Django admin for agency staff. Tenant scoping and the full admin arrive with the admin work;
until then nothing here is registered, so no model is exposed without scoping."""
