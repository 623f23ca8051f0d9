-- 0011: reserved for fresh11's appliance timestamp key (issue 11); this branch
-- ships no schema of its own under this number.  The lead keeps fresh11's 0011
-- at merge and drops this file.
SELECT 1;
