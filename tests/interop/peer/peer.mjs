// A real ActivityPub peer built with Fedify, driven over HTTP by Mumble's
// interop tests.
//
//   node peer.mjs --port PORT [--no-ed25519] [--log-level LEVEL]
//
// Listens on 127.0.0.1:PORT only; its origin is http://127.0.0.1:PORT.  One
// actor, "alice" (a Person at /users/alice).  Every activity that Fedify
// accepted (signature verified) is recorded; a control API under /_control/
// lets tests read those records and make alice send activities.  Signature
// verification is never skipped.
import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import http from "node:http";
import process from "node:process";
import { parseArgs } from "node:util";

import {
  createFederation,
  generateCryptoKeyPair,
  MemoryKvStore,
  SendActivityError,
} from "@fedify/fedify";
import {
  Accept,
  Activity,
  Create,
  Endpoints,
  Follow,
  isActor,
  Like,
  Note,
  PUBLIC_COLLECTION,
  Person,
  Reject,
  Undo,
  Update,
} from "@fedify/vocab";
import { Temporal } from "@js-temporal/polyfill";
import { configure, getLogger } from "@logtape/logtape";

// ---------------------------------------------------------------- options --

const { values: args } = parseArgs({
  options: {
    port: { type: "string" },
    "no-ed25519": { type: "boolean", default: false },
    "log-level": { type: "string", default: process.env.PEER_LOG_LEVEL },
  },
});
const PORT = Number.parseInt(args.port ?? "", 10);
if (!Number.isInteger(PORT) || PORT <= 0 || PORT > 65535) {
  process.stderr.write("usage: node peer.mjs --port PORT\n");
  process.exit(2);
}
const HOST = "127.0.0.1";
const ORIGIN = `http://${HOST}:${PORT}`;
const ALICE = "alice";
// Fedify's own logs: warnings and errors by default (debug shows signatures).
const FEDIFY_LEVEL = args["log-level"] ?? "warning";
const NO_ED25519 = args["no-ed25519"];

// --------------------------------------------------------------- logging --

function stderrSink(record) {
  // Expected with --no-ed25519: sends carry no Object Integrity Proof.
  const raw = record.rawMessage;
  if (
    NO_ED25519 && typeof raw === "string" &&
    raw.startsWith("No supported key found to create a proof")
  ) return;
  const ts = new Date(record.timestamp).toISOString();
  const category = record.category.join("·");
  let text = "";
  for (let i = 0; i < record.message.length; i++) {
    const part = record.message[i];
    if (i % 2 === 0) text += part;
    else text += typeof part === "string" ? part : inspectValue(part);
  }
  // Fedify puts details (reason, keyId, status...) in properties only.
  let extra = "";
  if (record.category[0] === "fedify" && record.level !== "debug") {
    const props = {};
    for (const [key, value] of Object.entries(record.properties)) {
      if (["requestId", "traceId", "spanId"].includes(key)) continue;
      if (!text.includes(inspectValue(value))) props[key] = value;
    }
    if (Object.keys(props).length > 0) {
      extra = " " + inspectValue(props).slice(0, 600);
    }
  }
  process.stderr.write(
    `${ts} [${record.level.toUpperCase()}] ${category}: ${text}${extra}\n`,
  );
}

function inspectValue(value) {
  if (value instanceof Error) return value.stack ?? String(value);
  if (value instanceof URL) return value.href;
  try {
    return JSON.stringify(value, (_key, v) => v instanceof Error ? String(v) : v);
  } catch {
    return String(value);
  }
}

await configure({
  sinks: { stderr: stderrSink },
  contextLocalStorage: new AsyncLocalStorage(),
  loggers: [
    { category: "fedify", lowestLevel: FEDIFY_LEVEL, sinks: ["stderr"] },
    { category: "peer", lowestLevel: "debug", sinks: ["stderr"] },
    { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
  ],
});
const log = getLogger(["peer"]);

// ----------------------------------------------------------------- state --

// 2048-bit like Mastodon's keys (Fedify's default of 4096 is slow to make).
const rsaKeys = await crypto.subtle.generateKey(
  {
    name: "RSASSA-PKCS1-v1_5",
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: "SHA-256",
  },
  true,
  ["sign", "verify"],
);
const keyPairs = [rsaKeys];
if (!NO_ED25519) keyPairs.push(await generateCryptoKeyPair("Ed25519"));

/** Activities received and verified, in arrival order. */
const inbox = [];
/** Deliveries attempted by alice: {type, id, to, inbox, ok, error}. */
const outbox = [];
/** Inbox requests rejected because their signature did not verify. */
const rejected = [];
/** Followers of alice: actor id -> {actor, followId}. */
const followers = new Map();
/** Actors alice follows: actor id -> {follow, actor, accepted, rejected}. */
const following = new Map();
/** Objects alice created, served at their ids: href -> Object. */
const objects = new Map();

/** Carries the raw request body from the HTTP adapter to inbox listeners. */
const rawBody = new AsyncLocalStorage();

// ------------------------------------------------------------ federation --

const federation = createFederation({
  kv: new MemoryKvStore(),
  // No queue: inbox listeners run before the inbox answers, and sends are
  // made at once, so delivery errors reach the control API caller.
  origin: ORIGIN,
  allowPrivateAddress: true, // required for 127.0.0.1
  skipSignatureVerification: false,
});

federation
  .setActorDispatcher("/users/{identifier}", async (ctx, identifier) => {
    if (identifier !== ALICE) return null;
    const keys = await ctx.getActorKeyPairs(identifier);
    return new Person({
      id: ctx.getActorUri(identifier),
      preferredUsername: identifier,
      name: "Alice (Fedify peer)",
      summary: "A Fedify peer used by Mumble's interop tests.",
      url: ctx.getActorUri(identifier),
      inbox: ctx.getInboxUri(identifier),
      endpoints: new Endpoints({ sharedInbox: ctx.getInboxUri() }),
      followers: ctx.getFollowersUri(identifier),
      following: ctx.getFollowingUri(identifier),
      manuallyApprovesFollowers: false,
      publicKey: keys[0].cryptographicKey, // the RSA key, #main-key
      assertionMethods: keys.map((key) => key.multikey),
    });
  })
  .setKeyPairsDispatcher((_ctx, identifier) =>
    identifier === ALICE ? keyPairs : []
  );

federation.setFollowersDispatcher(
  "/users/{identifier}/followers",
  (_ctx, identifier) =>
    identifier === ALICE
      ? { items: [...followers.values()].map((entry) => entry.actor) }
      : null,
);

federation.setFollowingDispatcher(
  "/users/{identifier}/following",
  (_ctx, identifier) =>
    identifier === ALICE
      ? { items: [...following.keys()].map((id) => new URL(id)) }
      : null,
);

// Everything alice sends is dereferenceable at its id.
for (const [cls, segment] of [
  [Note, "notes"],
  [Create, "creates"],
  [Follow, "follows"],
  [Like, "likes"],
  [Undo, "undos"],
  [Accept, "accepts"],
]) {
  federation.setObjectDispatcher(
    cls,
    `/users/{identifier}/${segment}/{id}`,
    (ctx, values) => {
      const uri = ctx.getObjectUri(cls, values);
      const obj = objects.get(uri.href);
      return obj instanceof cls ? obj : null;
    },
  );
}

/** "Note", "Person"...: the short form of an object's type IRI. */
function typeName(obj) {
  const typeId = obj?.constructor?.typeId?.href;
  if (typeId == null) return String(obj?.constructor?.name);
  return typeId.replace(/^.*[#/]/, "");
}

function newUri(ctx, cls) {
  return ctx.getObjectUri(cls, { identifier: ALICE, id: randomUUID() });
}

// ---------------------------------------------------------------- inbox --

async function record(ctx, activity, extra = {}) {
  const raw = rawBody.getStore();
  const json = raw?.json ??
    await activity.toJsonLd({ contextLoader: ctx.contextLoader });
  const type = typeof json?.type === "string"
    ? json.type
    : typeName(activity);
  const entry = {
    type,
    id: activity.id?.href ?? null,
    actor: activity.actorId?.href ?? null,
    inbox: ctx.recipient == null ? "shared" : ctx.recipient,
    receivedAt: new Date().toISOString(),
    json,
    ...extra,
  };
  inbox.push(entry);
  log.info("<- {type} {id} from {actor} (inbox: {inbox})", entry);
  return entry;
}

/** Dereferences an activity's object for the record, as Fedify apps do. */
async function describeObject(ctx, activity) {
  try {
    const obj = await activity.getObject({
      documentLoader: ctx.documentLoader,
      contextLoader: ctx.contextLoader,
    });
    if (obj == null) return { object: null };
    const attributedTo = obj.attributionId?.href ?? null;
    return {
      object: {
        type: typeName(obj),
        id: obj.id?.href ?? null,
        attributedTo,
        content: obj.content?.toString() ?? null,
        inReplyTo: obj.replyTargetId?.href ?? null,
        // What a Fedify app would check before trusting a Create/Update.
        attributedToActor: attributedTo != null &&
          attributedTo === activity.actorId?.href,
      },
    };
  } catch (error) {
    log.warn("could not resolve object of {id}: {error}", {
      id: activity.id?.href,
      error,
    });
    return { object: null, objectError: String(error?.message ?? error) };
  }
}

federation
  .setInboxListeners("/users/{identifier}/inbox", "/inbox")
  // Key fetches made while verifying signatures are signed GETs by alice,
  // on the shared inbox too (a personal inbox does so by default).
  .setSharedKeyDispatcher(() => ({ identifier: ALICE }))
  .on(Follow, async (ctx, follow) => {
    await record(ctx, follow);
    if (follow.actorId == null) return;
    const target = ctx.parseUri(follow.objectId);
    if (target?.type !== "actor" || target.identifier !== ALICE) {
      log.warn("Follow {id} is not for alice; ignored", {
        id: follow.id?.href,
      });
      return;
    }
    const follower = await follow.getActor(ctx);
    if (follower == null || !isActor(follower)) {
      throw new Error(`could not resolve follower ${follow.actorId.href}`);
    }
    followers.set(follower.id.href, {
      actor: follower,
      followId: follow.id?.href ?? null,
    });
    const accept = new Accept({
      id: newUri(ctx, Accept),
      actor: ctx.getActorUri(ALICE),
      object: follow,
      to: follower.id,
    });
    objects.set(accept.id.href, accept);
    // Like most servers, answer the Follow after its 202, not inside it.
    setTimeout(() => {
      send(ctx, follower, accept).catch(() => {/* logged in send() */});
    }, 0);
  })
  .on(Undo, async (ctx, undo) => {
    await record(ctx, undo);
    const actorId = undo.actorId?.href;
    const entry = actorId == null ? undefined : followers.get(actorId);
    if (entry == null) return;
    let undone = undo.objectId != null &&
      undo.objectId.href === entry.followId;
    if (!undone) {
      try {
        undone = (await undo.getObject(ctx)) instanceof Follow;
      } catch (error) {
        log.warn("could not resolve object of Undo {id}: {error}", {
          id: undo.id?.href,
          error,
        });
      }
    }
    if (undone) {
      followers.delete(actorId);
      log.info("follower {actor} removed", { actor: actorId });
    }
  })
  .on(Accept, async (ctx, accept) => {
    await record(ctx, accept);
    markFollow(accept, "accepted");
  })
  .on(Reject, async (ctx, reject) => {
    await record(ctx, reject);
    markFollow(reject, "rejected");
  })
  .on(Create, async (ctx, create) => {
    await record(ctx, create, await describeObject(ctx, create));
  })
  .on(Update, async (ctx, update) => {
    await record(ctx, update, await describeObject(ctx, update));
  })
  // Like, Announce, Delete and anything else: just record.
  .on(Activity, async (ctx, activity) => {
    await record(ctx, activity);
  })
  .onUnverifiedActivity((_ctx, activity, reason) => {
    const entry = {
      reason: reason.type,
      keyId: reason.keyId?.href ?? null,
      type: typeName(activity),
      id: activity.id?.href ?? null,
      actor: activity.actorId?.href ?? null,
      json: rawBody.getStore()?.json ?? null,
    };
    rejected.push(entry);
    log.warn(
      "signature not verified ({reason}, keyId {keyId}) for {type} {id}",
      entry,
    );
    // Returning nothing keeps Fedify's own 401 answer.
  })
  .onError((_ctx, error) => {
    log.error("inbox listener failed: {error}", { error });
  });

/** Marks our Follow as accepted/rejected; only its target may do that. */
function markFollow(activity, state) {
  const followId = activity.objectId?.href;
  const actorId = activity.actorId?.href;
  for (const entry of following.values()) {
    if (
      entry.actor.id.href === actorId &&
      (followId == null || entry.follow.id.href === followId)
    ) {
      entry[state] = true;
      log.info("our follow of {actor} was {state}", {
        actor: entry.actor.id.href,
        state,
      });
      return;
    }
  }
  log.warn("{state} by {actorId} matches no follow of ours ({followId})", {
    state,
    actorId,
    followId,
  });
}

// ----------------------------------------------------------------- send --

async function send(ctx, recipient, activity) {
  const entry = {
    type: typeName(activity),
    id: activity.id?.href ?? null,
    to: recipient.id?.href ?? null,
    inbox: recipient.inboxId?.href ?? null,
    ok: false,
    error: null,
    status: null,
  };
  outbox.push(entry);
  log.info("-> {type} {id} to {to} ({inbox})", entry);
  try {
    if (recipient.inboxId == null) {
      throw new Error(`actor ${entry.to} has no inbox`);
    }
    await ctx.sendActivity({ identifier: ALICE }, recipient, activity, {
      immediate: true,
    });
    entry.ok = true;
  } catch (error) {
    entry.error = String(error?.message ?? error);
    if (error instanceof SendActivityError) entry.status = error.statusCode;
    log.error("-> {type} {id} to {inbox} failed: {error}", entry);
    throw error;
  }
}

// -------------------------------------------------------------- control --

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function requireString(body, name) {
  const value = body?.[name];
  if (typeof value !== "string" || value === "") {
    throw new HttpError(400, `"${name}" (a non-empty string) is required`);
  }
  return value;
}

function requireUrl(body, name) {
  const value = requireString(body, name);
  try {
    return new URL(value);
  } catch {
    throw new HttpError(400, `"${name}" is not a URL: ${value}`);
  }
}

async function lookup(ctx, url, { signed = true } = {}) {
  const documentLoader = signed
    ? await ctx.getDocumentLoader({ identifier: ALICE })
    : ctx.documentLoader;
  try {
    return await ctx.lookupObject(url, { documentLoader });
  } catch (error) {
    throw new HttpError(404, `lookup of ${url.href} failed: ${error.message}`);
  }
}

/** What Fedify understood of a looked-up object (not its raw JSON). */
async function summarize(ctx, obj) {
  const summary = {
    type: typeName(obj),
    id: obj.id?.href ?? null,
    name: obj.name?.toString() ?? null,
    attributedTo: obj.attributionId?.href ?? null,
    content: obj.content?.toString() ?? null,
    inReplyTo: obj.replyTargetId?.href ?? null,
  };
  if (!isActor(obj)) return summary;
  const publicKeys = [];
  for await (const key of obj.getPublicKeys({ ...ctx, suppressError: true })) {
    publicKeys.push({
      id: key.id?.href ?? null,
      owner: key.ownerId?.href ?? null,
      algorithm: key.publicKey?.algorithm?.name ?? null,
    });
  }
  return {
    ...summary,
    preferredUsername: obj.preferredUsername?.toString() ?? null,
    inbox: obj.inboxId?.href ?? null,
    sharedInbox: obj.endpoints?.sharedInbox?.href ?? null,
    outbox: obj.outboxId?.href ?? null,
    followers: obj.followersId?.href ?? null,
    following: obj.followingId?.href ?? null,
    publicKeys,
  };
}

async function lookupActor(ctx, url) {
  const actor = await lookup(ctx, url);
  if (actor == null) throw new HttpError(404, `no object at ${url.href}`);
  if (!isActor(actor)) {
    throw new HttpError(
      422,
      `${url.href} is a ${typeName(actor)}, not an actor`,
    );
  }
  if (actor.inboxId == null) {
    throw new HttpError(422, `actor ${url.href} has no inbox`);
  }
  return actor;
}

async function sendOr502(ctx, recipient, activity) {
  try {
    await send(ctx, recipient, activity);
  } catch (error) {
    throw new HttpError(502, String(error?.message ?? error));
  }
}

const controlRoutes = {
  "GET /_control/health": () => ({ ok: true, origin: ORIGIN }),
  "GET /_control/inbox": () => ({ activities: inbox }),
  "DELETE /_control/inbox": () => {
    inbox.length = 0;
    return { ok: true };
  },
  "GET /_control/outbox": () => ({ activities: outbox }),
  "GET /_control/rejected": () => ({ requests: rejected }),
  "GET /_control/followers": () => ({ followers: [...followers.keys()] }),
  "GET /_control/following": () => ({
    following: [...following.values()].map((entry) => ({
      actor: entry.actor.id.href,
      follow: entry.follow.id.href,
      accepted: entry.accepted,
      rejected: entry.rejected,
    })),
  }),

  "POST /_control/lookup": async (ctx, body) => {
    const url = requireUrl(body, "url");
    const obj = await lookup(ctx, url, { signed: body.signed !== false });
    if (obj == null) throw new HttpError(404, `no object at ${url.href}`);
    if (body.summary === true) return await summarize(ctx, obj);
    return await obj.toJsonLd({ contextLoader: ctx.contextLoader });
  },

  "POST /_control/follow": async (ctx, body) => {
    const actor = await lookupActor(ctx, requireUrl(body, "actor"));
    const follow = new Follow({
      id: newUri(ctx, Follow),
      actor: ctx.getActorUri(ALICE),
      object: actor.id,
      to: actor.id,
    });
    objects.set(follow.id.href, follow);
    // Recorded before sending: the Accept may arrive before the 202 does.
    following.set(actor.id.href, {
      follow,
      actor,
      accepted: false,
      rejected: false,
    });
    try {
      await sendOr502(ctx, actor, follow);
    } catch (error) {
      following.delete(actor.id.href);
      throw error;
    }
    return { id: follow.id.href };
  },

  "POST /_control/unfollow": async (ctx, body) => {
    const actorUrl = requireUrl(body, "actor");
    const entry = following.get(actorUrl.href);
    if (entry == null) {
      throw new HttpError(404, `alice does not follow ${actorUrl.href}`);
    }
    const undo = new Undo({
      id: newUri(ctx, Undo),
      actor: ctx.getActorUri(ALICE),
      object: entry.follow,
      to: entry.actor.id,
    });
    objects.set(undo.id.href, undo);
    await sendOr502(ctx, entry.actor, undo);
    following.delete(actorUrl.href);
    return { id: undo.id.href };
  },

  "POST /_control/reply": async (ctx, body) => {
    const actor = await lookupActor(ctx, requireUrl(body, "actor"));
    const inReplyTo = requireUrl(body, "inReplyTo");
    const content = requireString(body, "content");
    const published = Temporal.Now.instant();
    const note = new Note({
      id: newUri(ctx, Note),
      attribution: ctx.getActorUri(ALICE),
      content,
      replyTarget: inReplyTo,
      to: PUBLIC_COLLECTION,
      cc: actor.id,
      published,
    });
    const create = new Create({
      id: newUri(ctx, Create),
      actor: ctx.getActorUri(ALICE),
      object: note,
      to: PUBLIC_COLLECTION,
      cc: actor.id,
      published,
    });
    objects.set(note.id.href, note);
    objects.set(create.id.href, create);
    await sendOr502(ctx, actor, create);
    return { id: create.id.href, noteId: note.id.href };
  },

  "POST /_control/like": async (ctx, body) => {
    const actor = await lookupActor(ctx, requireUrl(body, "actor"));
    const like = new Like({
      id: newUri(ctx, Like),
      actor: ctx.getActorUri(ALICE),
      object: requireUrl(body, "object"),
      to: actor.id,
    });
    objects.set(like.id.href, like);
    await sendOr502(ctx, actor, like);
    return { id: like.id.href };
  },

  "POST /_control/undo-like": async (ctx, body) => {
    const actor = await lookupActor(ctx, requireUrl(body, "actor"));
    const likeId = requireUrl(body, "id");
    let like = objects.get(likeId.href);
    if (!(like instanceof Like)) {
      like = new Like({
        id: likeId,
        actor: ctx.getActorUri(ALICE),
        object: requireUrl(body, "object"),
      });
    }
    const undo = new Undo({
      id: newUri(ctx, Undo),
      actor: ctx.getActorUri(ALICE),
      object: like,
      to: actor.id,
    });
    objects.set(undo.id.href, undo);
    await sendOr502(ctx, actor, undo);
    return { id: undo.id.href };
  },
};

async function handleControl(req, res, url, body) {
  const route = controlRoutes[`${req.method} ${url.pathname}`];
  let status = 200;
  let result;
  try {
    if (route == null) {
      throw new HttpError(404, `no control route ${req.method} ${url.pathname}`);
    }
    let parsed = {};
    if (req.method === "POST" && body.length > 0) {
      try {
        parsed = JSON.parse(body.toString("utf8"));
      } catch {
        throw new HttpError(400, "request body is not JSON");
      }
    }
    const ctx = federation.createContext(new URL(ORIGIN), undefined);
    result = await route(ctx, parsed);
  } catch (error) {
    status = error instanceof HttpError ? error.status : 500;
    result = { error: String(error?.message ?? error) };
    if (status >= 500) {
      log.error("control {method} {path} failed: {error}", {
        method: req.method,
        path: url.pathname,
        error,
      });
    }
  }
  const text = JSON.stringify(result);
  res.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(text),
  });
  res.end(text);
}

// ----------------------------------------------------------- HTTP server --

async function handleFederation(req, res, url, body) {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else if (value != null) headers.set(name, value);
  }
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  const request = new Request(url, {
    method: req.method,
    headers,
    body: hasBody ? body : undefined,
  });
  let json = null;
  if (req.method === "POST") {
    try {
      json = JSON.parse(body.toString("utf8"));
    } catch { /* Fedify answers 400 */ }
  }
  const response = await rawBody.run({ json }, () =>
    federation.fetch(request, {
      contextData: undefined,
      onNotFound: () =>
        new Response(JSON.stringify({ error: "not found" }), {
          status: 404,
          headers: { "Content-Type": "application/json" },
        }),
      onNotAcceptable: () =>
        new Response("Not acceptable; ask for application/activity+json", {
          status: 406,
          headers: { "Content-Type": "text/plain", Vary: "Accept" },
        }),
    }));
  const payload = Buffer.from(await response.arrayBuffer());
  const sig = headers.has("signature-input")
    ? " sig=rfc9421"
    : headers.has("signature")
    ? " sig=cavage"
    : "";
  log.debug("{method} {path} -> {status}{sig}", {
    method: req.method,
    path: url.pathname + url.search,
    status: response.status,
    sig,
  });
  if (req.method === "POST" && response.status >= 400) {
    log.warn("POST {path} answered {status}: {text}", {
      path: url.pathname,
      status: response.status,
      text: payload.toString("utf8").slice(0, 300),
    });
  }
  res.writeHead(response.status, Object.fromEntries(response.headers));
  res.end(payload);
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url ?? "/", ORIGIN);
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    if (url.pathname.startsWith("/_control/")) {
      await handleControl(req, res, url, body);
    } else {
      await handleFederation(req, res, url, body);
    }
  } catch (error) {
    log.error("request {method} {url} failed: {error}", {
      method: req.method,
      url: req.url,
      error,
    });
    if (!res.headersSent) {
      res.writeHead(500, { "Content-Type": "application/json" });
    }
    res.end(JSON.stringify({ error: String(error?.message ?? error) }));
  }
});

server.listen(PORT, HOST, () => {
  log.info("Fedify peer listening on {origin}; actor {origin}/users/alice", {
    origin: ORIGIN,
  });
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
