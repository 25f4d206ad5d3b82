/**
 * Exponential backoff with bounded jitter for retried deliveries: retry n waits about
 * base·factor^(n-1), capped, spread ±jitter so that messages failing together do not retry together.
 */
export interface BackoffOptions {
	/** Delay before the first retry. */
	baseMs: number;
	factor: number;
	/** No delay exceeds this, jitter included. */
	maxMs: number;
	/** Relative spread, 0..1: 0.2 means ±20 %. */
	jitter: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 2_000, factor: 2, maxMs: 10 * 60_000, jitter: 0.2 };

/** Smallest and largest delay before retry number `retry` (1 = the retry after the first failure). */
export function backoffBounds(retry: number, opts: BackoffOptions = DEFAULT_BACKOFF): { min: number; max: number } {
	const n = Math.max(1, Math.floor(retry));
	const jitter = Math.min(Math.max(opts.jitter, 0), 1);
	// Exponent clamped so that a large retry count cannot overflow into Infinity/NaN.
	const exact = Math.min(opts.maxMs, opts.baseMs * Math.pow(opts.factor, Math.min(n - 1, 64)));
	return { min: Math.max(0, Math.floor(exact * (1 - jitter))), max: Math.min(opts.maxMs, Math.ceil(exact * (1 + jitter))) };
}

/** A delay within the bounds; `random` in [0, 1) is injectable for tests. */
export function backoffDelay(retry: number, opts: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
	const { min, max } = backoffBounds(retry, opts);
	return Math.min(max, min + Math.floor(random() * (max - min + 1)));
}

export type RetryDecision = { retry: true; delayMs: number; at: Date } | { retry: false };

/**
 * After `attemptsMade` failed attempts: retry later, or give up once `maxAttempts` is reached or
 * the failure is permanent (a provider rejecting the message itself).
 */
export function nextRetry(attemptsMade: number, maxAttempts: number, now: Date, opts: BackoffOptions = DEFAULT_BACKOFF, permanent = false, random: () => number = Math.random): RetryDecision {
	if (permanent || attemptsMade >= maxAttempts) return { retry: false };
	const delayMs = backoffDelay(attemptsMade, opts, random);
	return { retry: true, delayMs, at: new Date(now.getTime() + delayMs) };
}

/**
 * Whether an HTTP status from a provider means "the same request may succeed later":
 * no status (network), 408, 429 and 5xx are transient; other 4xx reject the message for good.
 */
export function isTransientStatus(status: number | undefined): boolean {
	if (status == null || !Number.isFinite(status)) return true;
	return status === 408 || status === 429 || status >= 500 || status < 400;
}
