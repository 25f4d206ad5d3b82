/**
 * Failed logins per account and client address in a fixed window: after `maxFailures` failures
 * within `windowMs` of the first one, that account answers 429 to that address until the window
 * ends. Per address, so guessing from one place cannot lock the owner out everywhere; guesses from
 * many places still meet the gateway's per-address limit of the auth routes and bcrypt. The caller
 * keeps the state: in Redis when the shop has it (every node sees the same count), else in a
 * LoginFailureStore of its own. Every attempt is counted before its password is checked, in one
 * step of the store, and the count with it decides (attemptWaitSeconds).
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

/**
 * For an attempt already counted in `state`: seconds it must wait, or 0 when it may go on. The first
 * `maxFailures` attempts of a window go on; every later one waits for the window to end.
 */
export function attemptWaitSeconds(state: FailureState, now: number, policy = LOGIN_THROTTLE): number {
	return state.count > policy.maxFailures ? retryAfterSeconds(state, now, policy) : 0;
}

/**
 * The failure states of one process, when no shared cache keeps them (the embedded default). Its
 * own store, not the broker cacher: anonymous cached GETs fill that LRU and would evict a lock.
 * Bounded (`maxEntries`): when full, the states closest to their end go first, expired ones before
 * all. States are kept in the order their windows end (a new window is never older than a stored
 * one), so finding them costs nothing.
 */
export class LoginFailureStore {
	private readonly states = new Map<string, FailureState>();

	constructor(
		readonly maxEntries = 100_000,
		private readonly policy = LOGIN_THROTTLE,
	) {}

	get size(): number {
		return this.states.size;
	}

	get(key: string, now: number): FailureState | null {
		const state = this.states.get(key);
		if (!state) return null;
		if (this.ended(state, now)) {
			this.states.delete(key);
			return null;
		}
		return state;
	}

	/** `state` as recordFailure gives it: the same window as the stored one, or a window that opens now. */
	set(key: string, state: FailureState, now: number): void {
		// The same window keeps its place (Map.set on a present key does not move it); a new one ends last.
		if (this.states.get(key)?.since !== state.since) this.states.delete(key);
		this.states.set(key, state);
		for (const [oldest, s] of this.states) {
			if (this.states.size <= this.maxEntries && !this.ended(s, now)) break;
			this.states.delete(oldest);
		}
	}

	/** Counts one more failure under `key` and gives the state with it; synchronous, so parallel callers cannot lose a count. */
	countFailure(key: string, now: number): FailureState {
		const state = recordFailure(this.get(key, now), now, this.policy);
		this.set(key, state, now);
		return state;
	}

	/** Takes back one counted attempt (one refused before its password was checked); its window stays. */
	uncountFailure(key: string, now: number): void {
		const state = this.get(key, now);
		if (state && state.count > 0) state.count--;
	}

	delete(key: string): void {
		this.states.delete(key);
	}

	private ended(state: FailureState, now: number): boolean {
		return state.since + this.policy.windowMs <= now;
	}
}
