/**
 * Failed logins per account and client address in a fixed window: after `maxFailures` failures
 * within `windowMs` of the first one, that account answers 429 to that address until the window
 * ends. Per address, so guessing from one place cannot lock the owner out everywhere; guesses from
 * many places still meet the gateway's per-address limit of the auth routes and bcrypt. Pure: the
 * caller keeps the state (in the broker cacher, so every gateway sees the same count with Redis).
 */
export interface ThrottlePolicy {
	maxFailures: number;
	windowMs: number;
}

export const LOGIN_THROTTLE: ThrottlePolicy = { maxFailures: 5, windowMs: 15 * 60_000 };

export interface FailureState {
	count: number;
	/** Epoch ms of the first failure of the current window. */
	since: number;
}

export function throttleKey(email: string, client: string): string {
	return `login-fail:${email.trim().toLowerCase()}|${client}`;
}

/** Seconds to wait before trying again, or 0 when an attempt is allowed now. */
export function retryAfterSeconds(state: FailureState | null | undefined, now: number, policy = LOGIN_THROTTLE): number {
	if (!state || state.count < policy.maxFailures) return 0;
	const remaining = state.since + policy.windowMs - now;
	return remaining > 0 ? Math.ceil(remaining / 1000) : 0;
}

/** The state after one more failure: a new window when the previous one has passed. */
export function recordFailure(state: FailureState | null | undefined, now: number, policy = LOGIN_THROTTLE): FailureState {
	if (!state || now - state.since >= policy.windowMs) return { count: 1, since: now };
	return { count: state.count + 1, since: state.since };
}

/** How long the cacher must keep the state: until its window ends. */
export function stateTtlSeconds(state: FailureState, now: number, policy = LOGIN_THROTTLE): number {
	return Math.max(1, Math.ceil((state.since + policy.windowMs - now) / 1000));
}
