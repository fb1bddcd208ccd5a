/**
 * Bearer tokens: EdDSA (Ed25519) JWTs, verified against the operator's public key, with
 * a scope of `admin` (everything) or `timeline` (one timeline's endpoints).
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { importPKCS8, importSPKI, errors as joseErrors, jwtVerify, SignJWT } from "jose";
import { isTimelineId } from "../../timeline/index.js";
import { ApiError } from "./errors.js";

/** What a token allows. */
export type TokenScope = { scope: "admin" } | { scope: "timeline"; timeline_id: string };

/** A key `jose` accepts. */
export type VerifyKey = Awaited<ReturnType<typeof importSPKI>>;

/**
 * Reads an Ed25519 public key (PEM, `-----BEGIN PUBLIC KEY-----`), throwing an `Error`
 * naming the file when it is not one.
 *
 * @example
 * ```ts
 * import { loadPublicKey } from "tideline/service";
 * const key = await loadPublicKey("/etc/tideline/auth_public_key.pem");
 * ```
 */
export async function loadPublicKey(file: string): Promise<VerifyKey> {
  const pem = await readFile(file, "utf8");
  try {
    return await importSPKI(pem.trim(), "EdDSA");
  } catch (error) {
    throw new Error(
      `${file} is not an Ed25519 public key in PEM form (${(error as Error).message}); make one with: openssl pkey -in private.pem -pubout -out public.pem`,
    );
  }
}

/**
 * Parses a duration such as `90s`, `15m`, `1h`, `7d` to seconds; `RangeError` otherwise.
 *
 * @example
 * ```ts
 * import { parseTtl } from "tideline/service";
 * console.log(parseTtl("1h")); // 3600
 * ```
 */
export function parseTtl(text: string): number {
  const m = /^(\d{1,9})(s|m|h|d)$/.exec(text);
  if (m === null)
    throw new RangeError(`Invalid --ttl "${text}": expected a number and s, m, h or d (e.g. 1h)`);
  const unit = { s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as "s" | "m" | "h" | "d"];
  const seconds = Number(m[1]) * unit;
  if (seconds === 0) throw new RangeError(`Invalid --ttl "${text}": must be longer than 0`);
  return seconds;
}

/**
 * Signs a token for `scope` with an Ed25519 private key (PEM, PKCS#8), valid `ttlSeconds`.
 *
 * @example
 * ```ts
 * import { mintToken } from "tideline/service";
 * // const jwt = await mintToken(privatePem, { scope: "timeline", timeline_id: "main" }, 3600);
 * ```
 */
export async function mintToken(
  privateKeyPem: string,
  scope: TokenScope,
  ttlSeconds: number,
): Promise<string> {
  if (scope.scope === "timeline" && !isTimelineId(scope.timeline_id)) {
    throw new RangeError(
      `Invalid timeline id ${JSON.stringify(scope.timeline_id)}: expected 1 to 64 letters, digits, "-" or "_"`,
    );
  }
  let key: Awaited<ReturnType<typeof importPKCS8>>;
  try {
    key = await importPKCS8(privateKeyPem.trim(), "EdDSA");
  } catch (error) {
    throw new Error(
      `not an Ed25519 private key in PEM form (${(error as Error).message}); make one with: openssl genpkey -algorithm ed25519 -out private.pem`,
    );
  }
  return new SignJWT({ ...scope })
    .setProtectedHeader({ alg: "EdDSA", typ: "JWT" })
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(key);
}

/**
 * Checks an `Authorization` header: 401 `ApiError` when it is missing, malformed,
 * expired, signed by another key or carries no known scope; returns the scope otherwise.
 *
 * @example
 * ```ts
 * import { verifyAuthorization } from "tideline/service";
 * // const scope = await verifyAuthorization(request.headers.authorization, key);
 * ```
 */
export async function verifyAuthorization(
  header: string | undefined,
  key: VerifyKey,
): Promise<TokenScope> {
  if (header === undefined || header === "")
    throw new ApiError(401, "unauthorized", "Missing Authorization: Bearer <token>");
  const m = /^Bearer +([A-Za-z0-9_.-]+)$/i.exec(header.trim());
  if (m === null)
    throw new ApiError(
      401,
      "unauthorized",
      "Malformed Authorization header: expected Bearer <JWT>",
    );
  let payload: Record<string, unknown>;
  try {
    // A token must expire: one without `exp` would be valid for ever.
    ({ payload } = await jwtVerify(m[1]!, key, { algorithms: ["EdDSA"], requiredClaims: ["exp"] }));
  } catch (error) {
    const why =
      error instanceof joseErrors.JWTExpired
        ? "the token has expired"
        : error instanceof joseErrors.JWSSignatureVerificationFailed
          ? "the token is not signed by this server's key"
          : error instanceof joseErrors.JWTClaimValidationFailed && error.claim === "exp"
            ? "the token has no expiry (exp); mint one with `tideline token`"
            : `the token is invalid (${(error as Error).message})`;
    throw new ApiError(401, "unauthorized", `Unauthorized: ${why}`);
  }
  if (payload.scope === "admin") return { scope: "admin" };
  if (payload.scope === "timeline" && isTimelineId(payload.timeline_id))
    return { scope: "timeline", timeline_id: payload.timeline_id };
  throw new ApiError(
    401,
    "unauthorized",
    `Unauthorized: unknown scope ${JSON.stringify(payload.scope)} (expected "admin" or "timeline" with a timeline_id)`,
  );
}

/**
 * Whether `scope` reaches an endpoint: admin reaches all; a timeline scope only the
 * endpoints of its own timeline (`timelineId` is the path's, `undefined` for others).
 * Throws a 403 `ApiError` when it does not.
 *
 * @example
 * ```ts
 * import { checkScope } from "tideline/service";
 * checkScope({ scope: "timeline", timeline_id: "main" }, "main"); // passes
 * ```
 */
export function checkScope(scope: TokenScope, timelineId: string | undefined): void {
  if (scope.scope === "admin") return;
  if (timelineId !== undefined && scope.timeline_id === timelineId) return;
  throw new ApiError(
    403,
    "forbidden",
    timelineId === undefined
      ? `Forbidden: a token for timeline "${scope.timeline_id}" reaches only that timeline's endpoints`
      : `Forbidden: a token for timeline "${scope.timeline_id}" does not reach timeline "${timelineId}"`,
  );
}
