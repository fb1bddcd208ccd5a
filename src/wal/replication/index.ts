/**
 * The physical replication stream's CopyData codec: server messages parsed apart from
 * client messages serialized.
 *
 * @module
 */
export * from "./messages.js";
export * from "./parser.js";
export * from "./serializer.js";
export * from "./splitter.js";
