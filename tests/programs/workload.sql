-- An allocation-heavy SQLite workload for tests/preload.rs, run in an in-memory database:
-- a few hundred thousand inserts, updates, index builds, sorts and queries. Every result is
-- deterministic (no random(), every ordering explicit), so the output with and without
-- LD_PRELOAD must be identical.
PRAGMA cache_size = -65536;

CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, price REAL, note TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000)
INSERT INTO item
  SELECT i, 'item-' || (i * 7919 % 300007), i % 97, (i % 1000) / 10.0,
         printf('%08x-%s', i * 2654435761 % 4294967296, hex(i * 31))
  FROM n;

-- rows of growing width: text values from a few bytes to a few KiB
CREATE TABLE blob_row(id INTEGER PRIMARY KEY, body TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO blob_row SELECT i, substr(replace(hex(zeroblob(i % 2000)), '00', printf('%d;', i)), 1, i % 4000) FROM n;

UPDATE item SET price = price * 1.5, note = note || '-updated' WHERE grp % 3 = 0;
UPDATE item SET name = upper(name) WHERE id % 10 = 7;
DELETE FROM item WHERE id % 17 = 0;

CREATE INDEX item_name ON item(name);
CREATE INDEX item_grp_price ON item(grp, price);
CREATE INDEX blob_len ON blob_row(length(body));

SELECT 'count', count(*), round(sum(price), 2), min(name), max(name) FROM item;
SELECT 'groups', grp, count(*), round(avg(price), 3), max(note)
  FROM item WHERE grp < 5 GROUP BY grp ORDER BY grp;
SELECT 'lookup', id, name, price FROM item WHERE name IN ('item-1234', 'item-99999', 'ITEM-7') ORDER BY id;
SELECT 'range', count(*), round(sum(price), 2) FROM item WHERE grp = 42 AND price BETWEEN 10 AND 60;
SELECT 'sorted', id, note FROM item ORDER BY note DESC, id LIMIT 3;
SELECT 'distinct', count(DISTINCT substr(note, 1, 3)) FROM item;
SELECT 'join', count(*), sum(length(b.body)) FROM item i JOIN blob_row b ON b.id = i.id WHERE i.grp = 11;
SELECT 'widest', id, length(body) FROM blob_row ORDER BY length(body) DESC, id LIMIT 3;
SELECT 'concat', length(group_concat(name, ',')) FROM (SELECT name FROM item WHERE grp = 3 ORDER BY id);

-- a temporary copy sorted by a text key, then dropped
CREATE TEMP TABLE by_note AS SELECT note, id FROM item ORDER BY note;
SELECT 'temp', count(*), min(note), max(id) FROM by_note;
DROP TABLE by_note;
DROP INDEX item_name;
SELECT 'after drop', count(*) FROM item WHERE name LIKE 'item-12%';
