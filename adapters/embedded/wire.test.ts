import { describe, expect, it } from 'vitest';
import { copyFailStatement, copyFromFile, isCopyFromStdin, listenChannel, unlistenChannel } from './wire';

describe('recognising the statements the embedded server handles itself', () => {
  it.each([
    ['LISTEN bullmq_jobs', 'bullmq_jobs'],
    ['-- Subscribe to the shared job-notification channel\nLISTEN bullmq_jobs;\n', 'bullmq_jobs'],
    ['listen Jobs_Ready', 'jobs_ready'],
    ['LISTEN "Mixed ""Case"""', 'Mixed "Case"'],
    ['/* note */ LISTEN x ;', 'x'],
    ['SELECT 1; LISTEN x', undefined],
    ['LISTENER x', undefined],
  ])('LISTEN channel of %j is %j', (sql, channel) => {
    expect(listenChannel(sql)).toBe(channel);
  });

  it.each([
    ['UNLISTEN *', '*'],
    ['unlisten bullmq_events;', 'bullmq_events'],
    ['UNLISTEN "A"', 'A'],
    ['LISTEN a', undefined],
  ])('UNLISTEN channel of %j is %j', (sql, channel) => {
    expect(unlistenChannel(sql)).toBe(channel);
  });

  it.each([
    ['COPY billing_records (id, usage_id) FROM STDIN', true],
    ['copy ingest_rows (a, b) from stdin with (format text)', true],
    ['-- rows\nCOPY t FROM STDIN;', true],
    ["COPY t FROM '/tmp/file'", false],
    ['COPY t TO STDOUT', false],
    ['SELECT 1 FROM stdin_table', false],
  ])('%j is a COPY FROM STDIN: %s', (sql, yes) => {
    expect(isCopyFromStdin(sql)).toBe(yes);
  });

  it('reads the same rows from a file instead, keeping the columns and options', () => {
    expect(copyFromFile('COPY t (a, b) FROM STDIN WITH (FORMAT csv);', "/copy/it's.copy")).toBe("COPY t (a, b) FROM '/copy/it''s.copy' WITH (FORMAT csv)");
  });

  it('fails an abandoned COPY with the reason, quoted safely', () => {
    expect(copyFailStatement("it's $copy_fail$ broken")).toBe(
      "DO $copy_fail$ BEGIN RAISE EXCEPTION USING ERRCODE = 'query_canceled', MESSAGE = 'COPY from stdin failed: it''s  broken'; END $copy_fail$",
    );
  });
});
