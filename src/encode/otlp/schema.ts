// SPDX-License-Identifier: Apache-2.0
/**
 * The OTLP Profiles schema (opentelemetry-proto v1.10.0, the subset in ./proto) loaded once with
 * protobufjs. The .proto files are read at run time from the package (src/encode/otlp/proto), so the
 * schema stays the readable source of truth instead of generated code.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import { EbpfprofError, errorMessage } from '../../errors';
import { packageRoot } from '../../native/addon';

/** Version of opentelemetry-proto the .proto files follow. */
export const OTLP_PROTO_VERSION = '1.10.0';

export const OTLP_PROTO_DIR = path.join(packageRoot, 'src', 'encode', 'otlp', 'proto');

const FILES = ['opentelemetry/proto/collector/profiles/v1development/profiles_service.proto'];

export interface OtlpProfilesSchema {
  ExportProfilesServiceRequest: protobuf.Type;
  ExportProfilesServiceResponse: protobuf.Type;
  ProfilesData: protobuf.Type;
  Sample: protobuf.Type;
}

let cached: OtlpProfilesSchema | undefined;

export function otlpProfilesSchema(): OtlpProfilesSchema {
  if (cached) return cached;
  const root = new protobuf.Root();
  // Imports name paths from the proto root, as upstream lays them out.
  root.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(OTLP_PROTO_DIR, target));
  try {
    if (!fs.existsSync(path.join(OTLP_PROTO_DIR, FILES[0]!))) throw new Error(`${OTLP_PROTO_DIR} is missing`);
    root.loadSync(FILES);
    root.resolveAll();
  } catch (e) {
    throw new EbpfprofError('ENATIVE', `cannot load the OTLP Profiles schema from ${OTLP_PROTO_DIR}: ${errorMessage(e)}; reinstall ebpfprof`, { cause: e });
  }
  cached = {
    ExportProfilesServiceRequest: root.lookupType('opentelemetry.proto.collector.profiles.v1development.ExportProfilesServiceRequest'),
    ExportProfilesServiceResponse: root.lookupType('opentelemetry.proto.collector.profiles.v1development.ExportProfilesServiceResponse'),
    ProfilesData: root.lookupType('opentelemetry.proto.profiles.v1development.ProfilesData'),
    Sample: root.lookupType('opentelemetry.proto.profiles.v1development.Sample'),
  };
  return cached;
}
