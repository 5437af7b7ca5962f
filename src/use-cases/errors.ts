/**
 * A problem that retrying cannot fix (bad input, missing configuration): the job layer turns it
 * into BullMQ's UnrecoverableError, and the message is written for the operator who must act.
 */
export class PermanentError extends Error {
  override readonly name = 'PermanentError';
}

/** A problem worth retrying later (a lost race, a resource not ready yet). */
export class RetryableError extends Error {
  override readonly name = 'RetryableError';
}
