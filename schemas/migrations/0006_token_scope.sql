-- Token scopes (issue 12): a read token may only read; a write token may also manage
-- monitors through the API's write routes. Existing tokens stay read-only.
ALTER TABLE api_tokens
    ADD COLUMN scope text NOT NULL DEFAULT 'read' CHECK (scope IN ('read', 'write'));
CREATE INDEX api_tokens_org ON api_tokens (organization_id, id);
