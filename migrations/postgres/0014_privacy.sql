-- Privacy: an erased person keeps its row (its id holds the books together: orders, the
-- audit log), with every personal field replaced; `erased_at` says so, and ends its access
-- (access tokens are checked against it on every request).
ALTER TABLE users ADD COLUMN erased_at timestamptz;
