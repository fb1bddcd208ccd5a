/**
 * How the HTTP API reports failure: `{"error":{"code","message"}}` with a fitting status,
 * from the typed errors of the layers below.
 *
 * @module
 */
import {
  CancelledError,
  GateClosedError,
  ShutdownError,
  TimeoutError,
} from "../../lifecycle/index.js";
import {
  TimelineShutdownError,
  TimelineStateError,
  WaitLsnTimeoutError,
} from "../../timeline/index.js";
import { NoReachableSourceError, SystemIdMismatchError } from "../../walreceiver/index.js";
import {
  ServiceShuttingDownError,
  TimelineBusyError,
  TimelineExistsError,
  TimelineNotFoundError,
  TimelineRunningError,
} from "../timeline_service.js";

/** The body of every error response. */
export interface ApiErrorBody {
  error: { code: string; message: string; what?: string };
}

/**
 * An error with its HTTP status and a stable machine-readable code.
 *
 * @example
 * ```ts
 * import { ApiError } from "tideline/service";
 * throw new ApiError(400, "bad_request", 'lsn "zz" is not an LSN such as 16/B374D848');
 * ```
 */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** With `not_found`: what does not exist (`timeline`, `wal_file`). */
  readonly what: string | undefined;
  constructor(status: number, code: string, message: string, what?: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.what = what;
  }

  /** The JSON body. */
  toBody(): ApiErrorBody {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.what === undefined ? {} : { what: this.what }),
      },
    };
  }
}

/**
 * Maps any error to an {@linkcode ApiError}: a bad value (Tideline's `RangeError`) is 400,
 * an unknown timeline 404, an existing one (or remote WAL of another cluster) 409, a wait that timed out 504, anything
 * shutting down 503, an unreachable source 502, the rest 500.
 *
 * @example
 * ```ts
 * import { toApiError } from "tideline/service";
 * console.log(toApiError(new RangeError("bad")).status); // 400
 * ```
 */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof TimelineNotFoundError)
    return new ApiError(404, "not_found", message, "timeline");
  if (
    error instanceof TimelineExistsError ||
    error instanceof TimelineBusyError ||
    error instanceof TimelineRunningError ||
    error instanceof SystemIdMismatchError
  )
    return new ApiError(409, "conflict", message);
  if (error instanceof WaitLsnTimeoutError || error instanceof TimeoutError)
    return new ApiError(504, "timeout", message);
  if (
    error instanceof TimelineShutdownError ||
    error instanceof ServiceShuttingDownError ||
    error instanceof GateClosedError ||
    error instanceof ShutdownError ||
    error instanceof CancelledError
  )
    return new ApiError(503, "shutting_down", message);
  if (error instanceof TimelineStateError) return new ApiError(503, "unavailable", message);
  if (error instanceof NoReachableSourceError)
    return new ApiError(502, "source_unreachable", message);
  // Tideline's own checks of what a caller asked for throw RangeError naming the value; a
  // RangeError or TypeError of the engine or of Node (stack overflow, ERR_OUT_OF_RANGE,
  // "cannot read properties") is a bug of ours: 500.
  if (
    error instanceof RangeError &&
    (error as { code?: unknown }).code === undefined &&
    !/call stack|array length|Invalid (time|string length)/.test(message)
  )
    return new ApiError(400, "bad_request", message);
  return new ApiError(500, "internal", message);
}
