-- Provider presets and their quirks (issue 5). Forward-only: never edit once released.

-- The preset a provider was registered from (NULL: registered by hand), and its
-- generic quirks as one JSON object (token host allow-list, callback parameters
-- to keep, extra error codes, ...; see tokenkeep/models.py Quirks).
ALTER TABLE providers ADD COLUMN preset TEXT;
ALTER TABLE providers ADD COLUMN quirks TEXT NOT NULL DEFAULT '{}';

-- Where this connection exchanges and refreshes, when the callback moved it
-- (Zoho's accounts-server); NULL: the provider's token_url.
ALTER TABLE tokens ADD COLUMN token_url TEXT;
