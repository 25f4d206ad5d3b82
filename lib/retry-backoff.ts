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

/** When to give up on a message that keeps failing: by attempts, by time, whichever comes first. */
export interface RetryLimits {
	/** Attempts before giving up; Infinity: by time only. */
	maxAttempts: number;
	/** A failure this long (ms) after the attempts began is the last; Infinity: by attempts only. */
	windowMs: number;
}

export interface FailedAttempt {
	/** Attempts made so far, the failed one included. */
	attempts: number;
	/** When the attempts began (the retry window's start). */
	since: Date;
	/** The provider rejected the message itself: retrying the same request cannot help. */
	permanent?: boolean;
	/** The provider's Retry-After, in ms from now (see retryAfterMs). */
	retryAfterMs?: number | null;
}

/**
 * After a failed attempt: retry later, or give up (a permanent failure, the attempts used up, or the
 * window over). A retry waits its backoff, and at least the provider's Retry-After, capped at the
 * backoff's cap: a provider asking for an hour is asked again sooner rather than never.
 */
export function nextRetry(failed: FailedAttempt, limits: RetryLimits, now: Date, opts: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): RetryDecision {
	if (failed.permanent || failed.attempts >= limits.maxAttempts) return { retry: false };
	if (now.getTime() - failed.since.getTime() >= limits.windowMs) return { retry: false };
	let delayMs = backoffDelay(failed.attempts, opts, random);
	const asked = failed.retryAfterMs;
	if (asked != null && asked > 0) {
		// Spread after the time the provider gave, never before it: messages throttled together do not all come back at once.
		const jitter = Math.min(Math.max(opts.jitter, 0), 1);
		delayMs = Math.max(delayMs, Math.min(opts.maxMs, asked + Math.floor(random() * asked * jitter)));
	}
	return { retry: true, delayMs, at: new Date(now.getTime() + delayMs) };
}

/**
 * A Retry-After header's wait in ms from `now`: delay-seconds ("120") or an HTTP date (a date past
 * is 0); null when absent or neither.
 */
export function retryAfterMs(header: string | null | undefined, now: Date = new Date()): number | null {
	const value = header?.trim();
	if (!value) return null;
	if (/^\d+$/.test(value)) return Number(value) * 1000;
	// An HTTP date names its weekday and "GMT"; a bare number of another shape ("1.5", "-5") is neither form.
	if (!/^[A-Za-z]{3},/.test(value)) return null;
	const at = Date.parse(value);
	return Number.isNaN(at) ? null : Math.max(0, at - now.getTime());
}

/**
 * Whether an HTTP status from a provider means "the same request may succeed later":
 * no status (network), 408, 429 and 5xx are transient; other 4xx reject the message for good.
 */
export function isTransientStatus(status: number | undefined): boolean {
	if (status == null || !Number.isFinite(status)) return true;
	return status === 408 || status === 429 || status >= 500 || status < 400;
}
