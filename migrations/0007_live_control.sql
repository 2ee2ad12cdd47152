-- Live control from any terminal (`replay pause`, `replay resume`, `replay set`): the run's pace
-- row carries the operator's settings, read by every executor at each batch's slot. NULL means
-- "the plan's". A resume whose plan paces differently clears them (the change is logged).
ALTER TABLE replay.pace
    ADD COLUMN per_second INTEGER CHECK (per_second >= 1),
    ADD COLUMN batch_size INTEGER CHECK (batch_size >= 1),
    ADD COLUMN paused BOOLEAN NOT NULL DEFAULT false;
