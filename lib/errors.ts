import { Errors } from "moleculer";

const { MoleculerClientError, MoleculerError, MoleculerRetryableError } = Errors;

/** Field-level problem, in the same shape fastest-validator reports them. */
export interface FieldProblem {
	field: string;
	message: string;
	type?: string;
}

/** 404, also for another user's resource: we never confirm that it exists. */
export class NotFoundError extends MoleculerClientError {
	constructor(what = "Resource", data?: unknown) {
		super(`${what} not found`, 404, "NOT_FOUND", data);
		this.name = "NotFoundError";
	}
}

export class UnauthorizedError extends MoleculerClientError {
	constructor(message = "Authentication required", type = "UNAUTHORIZED") {
		super(message, 401, type);
		this.name = "UnauthorizedError";
	}
}

export class ForbiddenError extends MoleculerClientError {
	constructor(message = "Not allowed") {
		super(message, 403, "FORBIDDEN");
		this.name = "ForbiddenError";
	}
}

export class BadRequestError extends MoleculerClientError {
	constructor(message = "Malformed request", type = "BAD_REQUEST", data?: unknown) {
		super(message, 400, type, data);
		this.name = "BadRequestError";
	}
}

export class PayloadTooLargeError extends MoleculerClientError {
	constructor(limit = "1mb") {
		super("Payload too large", 413, "PAYLOAD_TOO_LARGE", { limit });
		this.name = "PayloadTooLargeError";
	}
}

export class UnsupportedMediaTypeError extends MoleculerClientError {
	constructor(message: string) {
		super(message, 415, "UNSUPPORTED_MEDIA_TYPE");
		this.name = "UnsupportedMediaTypeError";
	}
}

/** A path of the API asked with a method it does not take; `Allow` (and `data.allowed`) names those it takes. */
export class MethodNotAllowedError extends MoleculerClientError {
	constructor(method: string, allowed: string[]) {
		super(`${method} is not a method of this path; it takes ${allowed.join(", ")}`, 405, "METHOD_NOT_ALLOWED", { allowed });
		this.name = "MethodNotAllowedError";
	}
}

export class PaymentDeclinedError extends MoleculerClientError {
	constructor(message = "Payment declined", data?: unknown) {
		super(message, 402, "PAYMENT_DECLINED", data);
		this.name = "PaymentDeclinedError";
	}
}

/** 409: duplicates, stock, state transitions, idempotency conflicts. */
export class ConflictError extends MoleculerClientError {
	constructor(message: string, type = "CONFLICT", data?: unknown) {
		super(message, 409, type, data);
		this.name = "ConflictError";
	}
}

/** Broker errors that mean "try again later" (no node, a timeout, a full queue), not "you did something wrong". */
export const BROKER_UNAVAILABLE_ERRORS: ReadonlySet<string> = new Set(["ServiceNotAvailableError", "ServiceNotFoundError", "RequestTimeoutError", "RequestSkippedError", "QueueIsFullError", "BrokerDisconnectedError"]);

/** A write refused by a unique index (the collections' 409 DUPLICATE): usually "someone was first". */
export function isDuplicate(err: unknown): boolean {
	return (err as { type?: unknown } | null | undefined)?.type === "DUPLICATE";
}

export class InsufficientStockError extends ConflictError {
	constructor(data: { variantId: string; requested?: number; available?: number }) {
		super("Insufficient stock", "INSUFFICIENT_STOCK", data);
		this.name = "InsufficientStockError";
	}
}

/** 422 in the same shape as the broker's own ValidationError, so clients parse one format. */
export class UnprocessableError extends MoleculerClientError {
	constructor(message: string, problems: FieldProblem[], type = "VALIDATION_ERROR") {
		super(message, 422, type, problems);
		this.name = "ValidationError";
	}
}

/** Shorthand for a single bad field. */
export function invalidField(field: string, message: string, type = "invalid"): UnprocessableError {
	return new UnprocessableError(message, [{ field, message, type }]);
}

export class TooManyRequestsError extends MoleculerClientError {
	retryAfter: number;
	constructor(retryAfterSeconds: number, message = "Too many requests") {
		super(message, 429, "RATE_LIMITED", { retryAfter: retryAfterSeconds });
		this.name = "TooManyRequestsError";
		this.retryAfter = retryAfterSeconds;
	}
}

/** 503 that callers may retry: a dependency is down or a circuit is open. */
export class ServiceUnavailableError extends MoleculerRetryableError {
	constructor(message = "Service unavailable", data?: unknown) {
		super(message, 503, "SERVICE_UNAVAILABLE", data);
		this.name = "ServiceUnavailableError";
	}
}

/**
 * 503 of a service that is well but has more work queued than it can start in time (a burst of
 * password hashing): refused before anything was done, so trying again shortly is safe. Not a
 * failure of the service: it does not count towards opening its circuit (breaksCircuit).
 */
export class BusyError extends MoleculerError {
	constructor(message: string) {
		super(message, 503, "BUSY");
		this.name = "BusyError";
	}
}

/**
 * Whether a failed call counts towards opening the circuit of the endpoint that answered it: only a
 * failure of the service itself (a 5xx, a timeout, a crash), not a customer's bad input nor a refusal
 * it made on purpose because it was busy (a burst of sign-ins would shut sign-in for everyone). Nor
 * a store it cannot write to: an embedded store's refused write (a full disk; the store tries the disk
 * again each second by itself, and no other node holds it) or Redis unreachable (every node of the
 * service shares it). Another node could not do better, and an open circuit kept answering 503 for
 * up to 10 s after the store was back.
 */
export function breaksCircuit(err: unknown): boolean {
	const e = err as { code?: unknown; name?: unknown; type?: unknown } | null | undefined;
	if (e?.type === "BUSY" || e?.name === "StoreUnavailableError" || e?.name === "RedisUnavailableError") return false;
	return !e?.code || (typeof e.code === "number" && e.code >= 500) || e.name === "RequestTimeoutError";
}

/**
 * 503 of a checkout that failed and is being undone by recovery (money may be held meanwhile): the
 * retry with the same key waits for it. Not retryable by the broker, which would run the checkout
 * again at once.
 */
export class CheckoutBeingUndoneError extends MoleculerError {
	constructor(orderId: string) {
		super("The checkout failed and is being undone; retry with the same Idempotency-Key in a few seconds", 503, "CHECKOUT_BEING_UNDONE", { orderId });
		this.name = "CheckoutBeingUndoneError";
	}
}

/**
 * What the broker's retry policy sends again: an error marked retryable (no node took the call, its node
 * left, a 503), and a timeout only of an action safe to run twice at once (`repeatable`, by name). A
 * timed-out call may still be running (in this very process, when local): sending it again ran a
 * registration or a password change twice while the first went on, and under a burst of password
 * hashing each retry added more of the work that made it slow.
 */
export function mayRetry(err: unknown, repeatable: (action: string) => boolean = () => false): boolean {
	const e = err as { retryable?: unknown; name?: unknown; data?: { action?: unknown } } | null | undefined;
	if (!e?.retryable) return false;
	return e.name !== "RequestTimeoutError" || (typeof e.data?.action === "string" && repeatable(e.data.action));
}

/**
 * Whether a failed call may still have taken effect: anything but the service's own refusal (a
 * 4xx: it decided, and did nothing). A timeout, a 5xx or a lost answer may hide a done change.
 */
export function mayHaveTakenEffect(err: unknown): boolean {
	const code = (err as { code?: unknown } | null | undefined)?.code;
	return !(typeof code === "number" && code >= 400 && code < 500);
}
