/**
 * OpenAPI 3 document generated from the gateway's aliases and the actions' fastest-validator
 * params, so the published contract cannot drift from the code.
 */
export interface RouteInfo {
	method: string;
	/** Full path with `:param` segments, e.g. /api/products/:id */
	path: string;
	action?: string;
	params?: Record<string, any>;
	auth?: "required" | "optional";
	roles?: string[];
	description?: string;
}

import { expandRule } from "./param-rules";

type JsonSchema = Record<string, any>;

export function ruleToSchema(raw: any): JsonSchema {
	const rule = expandRule(raw);
	const s: JsonSchema = {};
	switch (rule.type) {
		case "string":
			s.type = "string";
			if (rule.min != null) s.minLength = rule.min;
			if (rule.max != null) s.maxLength = rule.max;
			if (rule.length != null) s.minLength = s.maxLength = rule.length;
			if (rule.enum) s.enum = rule.enum;
			if (rule.pattern) s.pattern = String(rule.pattern instanceof RegExp ? rule.pattern.source : rule.pattern);
			break;
		case "email":
			Object.assign(s, { type: "string", format: "email" });
			if (rule.max != null) s.maxLength = rule.max;
			break;
		case "url":
			Object.assign(s, { type: "string", format: "uri" });
			break;
		case "uuid":
			Object.assign(s, { type: "string", format: "uuid" });
			break;
		case "date":
			Object.assign(s, { type: "string", format: "date-time" });
			break;
		case "number":
			s.type = rule.integer ? "integer" : "number";
			if (rule.min != null) s.minimum = rule.min;
			if (rule.max != null) s.maximum = rule.max;
			// OpenAPI 3.0: exclusiveMinimum is a flag on minimum.
			if (rule.positive) Object.assign(s, { minimum: 0, exclusiveMinimum: true });
			break;
		case "boolean":
			s.type = "boolean";
			break;
		case "enum":
			s.enum = rule.values;
			break;
		case "equal":
			s.enum = [rule.value];
			break;
		case "array":
			s.type = "array";
			s.items = rule.items ? ruleToSchema(rule.items) : {};
			if (rule.min != null) s.minItems = rule.min;
			if (rule.max != null) s.maxItems = rule.max;
			break;
		case "object":
			Object.assign(s, rule.props ? objectSchema(rule.props) : { type: "object" });
			break;
		case "record":
			Object.assign(s, { type: "object", additionalProperties: rule.value ? ruleToSchema(rule.value) : {} });
			break;
		case "multi":
			s.oneOf = (rule.rules as any[]).map(ruleToSchema);
			break;
		default:
			break;
	}
	if (rule.default !== undefined && typeof rule.default !== "function") s.default = rule.default;
	return s;
}

function isOptional(raw: any): boolean {
	const r = expandRule(raw);
	return !!(r.optional || r.default !== undefined);
}

export function objectSchema(props: Record<string, any>): JsonSchema {
	const properties: Record<string, JsonSchema> = {};
	const required: string[] = [];
	for (const [name, rule] of Object.entries(props)) {
		if (name.startsWith("$$")) continue;
		if (expandRule(rule).type === "forbidden") continue;
		properties[name] = ruleToSchema(rule);
		if (!isOptional(rule)) required.push(name);
	}
	return { type: "object", properties, ...(required.length ? { required } : {}) };
}

const ERROR_REF = { $ref: "#/components/schemas/Error" };
const errorResponse = (description: string) => ({ description, content: { "application/json": { schema: ERROR_REF } } });

export function buildOpenApi(routes: RouteInfo[], info: { title: string; version: string; description?: string }) {
	const paths: Record<string, Record<string, any>> = {};
	const sorted = [...routes].sort((a, b) => a.path.localeCompare(b.path) || a.method.localeCompare(b.method));
	for (const r of sorted) {
		const method = r.method.toLowerCase();
		if (method === "*" || method === "all") continue;
		const pathParams: string[] = [];
		const oaPath = r.path.replace(/:([A-Za-z0-9_]+)/g, (_m, name) => {
			pathParams.push(name);
			return `{${name}}`;
		});
		const params = r.params ?? {};
		const op: Record<string, any> = {
			operationId: `${method}${oaPath.replace(/[^A-Za-z0-9]+/g, "_")}`,
			summary: r.description ?? r.action ?? `${r.method} ${r.path}`,
			tags: [oaPath.split("/")[2] ?? "api"],
			parameters: pathParams.map((name) => ({ name, in: "path", required: true, schema: params[name] ? ruleToSchema(params[name]) : { type: "string" } })),
			responses: {
				[method === "post" ? "201" : "200"]: { description: "Success", content: { "application/json": { schema: {} } } },
				"400": errorResponse("Malformed request"),
				"422": errorResponse("Validation failed; `data` lists each bad field"),
				"429": errorResponse("Rate limited (see Retry-After)"),
				"503": errorResponse("A service is unavailable"),
			},
		};
		if (method === "post") op.responses["200"] = { description: "Success (idempotent replay or no new resource)" };
		const rest = Object.fromEntries(Object.entries(params).filter(([k]) => !pathParams.includes(k) && !k.startsWith("$$")));
		if (["post", "put", "patch"].includes(method)) {
			if (Object.keys(rest).length) op.requestBody = { required: true, content: { "application/json": { schema: objectSchema(rest) } } };
			op.responses["413"] = errorResponse("Body larger than 1 MB");
		} else {
			for (const [name, rule] of Object.entries(rest)) {
				const schema = ruleToSchema(rule);
				// Query strings carry scalars; objects/arrays are described as strings in a query.
				op.parameters.push({ name, in: "query", required: !isOptional(rule), schema: schema.type === "object" ? { type: "string" } : schema });
			}
		}
		if (r.auth || r.roles?.length) {
			op.security = r.auth === "optional" && !r.roles?.length ? [{}, { bearerAuth: [] }] : [{ bearerAuth: [] }];
			op.responses["401"] = errorResponse("Missing, invalid or expired token");
			if (r.roles?.length) {
				op.responses["403"] = errorResponse(`Requires role: ${r.roles.join(", ")}`);
				op.description = `Roles: ${r.roles.join(", ")}`;
			}
		}
		if (pathParams.length) op.responses["404"] = errorResponse("Not found");
		if (!op.parameters.length) delete op.parameters;
		(paths[oaPath] ??= {})[method] = op;
	}
	return {
		openapi: "3.0.3",
		info,
		servers: [{ url: "/" }],
		paths,
		components: {
			securitySchemes: { bearerAuth: { type: "http", scheme: "bearer", bearerFormat: "JWT" } },
			schemas: {
				Error: {
					type: "object",
					properties: { name: { type: "string" }, message: { type: "string" }, code: { type: "integer" }, type: { type: "string" }, data: {} },
					required: ["name", "message", "code"],
				},
			},
		},
	};
}
