/** The one HTTP client of the test suites: JSON in, status/body/headers out. */
export interface HttpResult<T = any> {
	status: number;
	body: T;
	headers: Headers;
	text: string;
}

export interface RequestOptions {
	body?: unknown;
	/** Sent as-is (a string or Buffer), for malformed or oversized bodies. */
	raw?: string | Buffer;
	token?: string;
	headers?: Record<string, string>;
}

export class HttpClient {
	constructor(readonly baseUrl: string) {}

	async request<T = any>(method: string, path: string, opts: RequestOptions = {}): Promise<HttpResult<T>> {
		const headers: Record<string, string> = { ...(opts.headers ?? {}) };
		let body: string | Buffer | undefined;
		if (opts.raw !== undefined) {
			body = opts.raw;
			headers["content-type"] ??= "application/json";
		} else if (opts.body !== undefined) {
			body = JSON.stringify(opts.body);
			headers["content-type"] = "application/json";
		}
		if (opts.token) headers.authorization = `Bearer ${opts.token}`;
		const res = await fetch(this.baseUrl + path, { method, headers, body: body as any });
		const text = await res.text();
		let parsed: any = text;
		try {
			parsed = text ? JSON.parse(text) : null;
		} catch {
			/* not JSON: keep text */
		}
		return { status: res.status, body: parsed, headers: res.headers, text };
	}

	get<T = any>(path: string, opts?: RequestOptions) {
		return this.request<T>("GET", path, opts);
	}
	post<T = any>(path: string, body?: unknown, opts: RequestOptions = {}) {
		return this.request<T>("POST", path, { ...opts, body });
	}
	patch<T = any>(path: string, body?: unknown, opts: RequestOptions = {}) {
		return this.request<T>("PATCH", path, { ...opts, body });
	}
	put<T = any>(path: string, body?: unknown, opts: RequestOptions = {}) {
		return this.request<T>("PUT", path, { ...opts, body });
	}
	delete<T = any>(path: string, opts?: RequestOptions) {
		return this.request<T>("DELETE", path, opts);
	}
}
