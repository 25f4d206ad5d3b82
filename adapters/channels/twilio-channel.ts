/** SMS through Twilio's Messages API with the official twilio client. */
import type twilio from "twilio";
import type RequestClient from "twilio/lib/base/RequestClient";
import { DeliveryError, SEND_TIMEOUT_MS, clientPerTimeout, type DeliveryResult, type NotificationChannel, type OutgoingMessage, type SendOptions } from "./notification-channel";

export interface TwilioOptions {
	accountSid: string;
	authToken: string;
	from: string;
	/** Another API origin (a local fake in tests): every *.twilio.com URL is rewritten to it. */
	apiBase?: string;
	timeoutMs?: number;
}

/** Twilio's answer with a Retry-After (a 429 or 503): the SDK's own errors keep no headers. */
class ThrottledAnswer extends Error {
	constructor(
		message: string,
		readonly status: number,
		readonly retryAfter: string,
	) {
		super(message);
	}
}

function reasonOf(body: unknown, status: number): string {
	try {
		const json = (typeof body === "string" ? JSON.parse(body) : body) as Record<string, unknown> | null;
		const reason = json?.message ?? json?.detail ?? json?.title;
		if (typeof reason === "string" && reason) return reason;
	} catch {
		// Not JSON (a proxy's page): the status says enough.
	}
	return `[HTTP ${status}] Failed to execute request`;
}

/**
 * The SDK's HTTP client, sending to `apiBase` when set (Twilio's `edge`/`region` only change
 * *.twilio.com host names), and throwing an answer that carries Retry-After with it. A wrapped
 * instance rather than a subclass, so that the SDK loads only when a channel is made.
 */
export function rebasedRequestClient(apiBase: string | undefined, opts?: RequestClient.RequestClientOptions): RequestClient {
	const TwilioRequestClient = require("twilio/lib/base/RequestClient") as typeof RequestClient;
	const client = new TwilioRequestClient(opts);
	const send = client.request.bind(client);
	const base = apiBase?.replace(/\/+$/, "");
	client.request = async (req) => {
		const res = await send(base ? { ...req, uri: req.uri.replace(/^https:\/\/[a-z0-9.-]*twilio\.com/i, base) } : req);
		const retryAfter = res.statusCode >= 400 ? (res.headers as Record<string, unknown> | undefined)?.["retry-after"] : undefined;
		if (typeof retryAfter === "string") throw new ThrottledAnswer(reasonOf(res.body, res.statusCode), res.statusCode, retryAfter);
		return res;
	};
	return client;
}

export class TwilioChannel implements NotificationChannel {
	readonly provider = "twilio" as const;
	readonly medium = "sms" as const;
	private readonly clientWith = clientPerTimeout((timeout): ReturnType<typeof twilio> => {
		// Required only when TWILIO_* selects this channel: the SDK is large and slow to load.
		const createClient = require("twilio") as typeof twilio;
		return createClient(this.opts.accountSid, this.opts.authToken, { timeout, httpClient: rebasedRequestClient(this.opts.apiBase, { timeout }) });
	});

	constructor(private readonly opts: TwilioOptions) {
		this.clientWith(opts.timeoutMs ?? SEND_TIMEOUT_MS);
	}

	async send(message: OutgoingMessage, options: SendOptions = {}): Promise<DeliveryResult> {
		try {
			const sms = await this.clientWith(options.timeoutMs ?? this.opts.timeoutMs ?? SEND_TIMEOUT_MS).messages.create({ to: message.to, from: this.opts.from, body: message.text });
			return { status: "sent", provider: this.provider, providerId: sms.sid ?? null };
		} catch (err: any) {
			const status = typeof err?.status === "number" ? err.status : undefined;
			const retryAfter = err instanceof ThrottledAnswer ? err.retryAfter : undefined;
			throw new DeliveryError(`Twilio ${status ?? "network"} error: ${err?.message ?? "unknown error"}`, this.provider, status, undefined, retryAfter);
		}
	}
}
