"""The train stage: query-side candidates (:mod:`.query`), the full candidate (:mod:`.full`), wired by :mod:`.stage`."""
