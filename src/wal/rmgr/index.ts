/**
 * Resource managers and record type names per PostgreSQL major version (15..18).
 *
 * @example
 * ```ts
 * import { recordTypeName, rmgrName } from "tideline/wal";
 * `${rmgrName(16, 10)}/${recordTypeName(16, 10, 0x40)}`; // "Heap/HOT_UPDATE"
 * ```
 *
 * @module
 */
export {
  isCustomRmgrId,
  isValidRmgrId,
  type RecordTypeInfo,
  RM_MAX_BUILTIN_ID,
  RmgrId,
  type RmgrInfo,
  recordTypeName,
  recordTypes,
  rmgrName,
  rmgrs,
} from "./names.js";
export {
  BUILTIN_RMGRS,
  type IdentifyMask,
  type RecordTypeDef,
  RM_MAX_ID,
  RM_MIN_CUSTOM_ID,
  type RmgrDef,
} from "./table.js";
export {
  checkVersion,
  isSupportedVersion,
  SUPPORTED_VERSIONS,
  type SupportedVersion,
} from "./versions.js";
