// A useSocket() hook the way apps built on socket.io-client write it (the shape of the seed's
// "Client Hook Implementation"): one socket per mounted hook, the token from localStorage, the
// usual reconnection options, and `emit` / `on` helpers. The two-stacks test bundles this file
// twice: as it is, and with the import line below changed to "@switchboard/client/socket.io".
import { useCallback, useEffect, useRef, useState } from "react";
import { io } from "socket.io-client";

/** What a Vite app reads from import.meta.env; here the page's host sets it before the bundle runs. */
const env = () => globalThis.__ENV__ ?? {};

export function useSocket() {
  const [socket, setSocket] = useState(null);
  const [connected, setConnected] = useState(false);
  const attempts = useRef(0);

  useEffect(() => {
    const token = localStorage.getItem("accessToken");
    if (!token) return undefined;
    const { SOCKET_URL = "", RECONNECTION_DELAY = 1000, RECONNECTION_DELAY_MAX = 5000 } = env();
    const s = io(SOCKET_URL, {
      auth: { token },
      transports: ["websocket", "polling"],
      reconnection: true,
      reconnectionDelay: RECONNECTION_DELAY,
      reconnectionDelayMax: RECONNECTION_DELAY_MAX,
      reconnectionAttempts: 5,
    });
    const onConnect = () => {
      attempts.current = 0;
      setConnected(true);
      console.log("socket: connect");
    };
    const onDisconnect = (reason) => {
      setConnected(false);
      console.log(`socket: disconnect (${reason})`);
    };
    const onAttempt = (n) => {
      attempts.current = n;
      console.log(`socket: reconnect attempt ${n}`);
    };
    s.on("connect", onConnect);
    s.on("disconnect", onDisconnect);
    s.io.on("reconnect_attempt", onAttempt);
    const onFailed = () => console.log("socket: reconnect failed");
    s.io.on("reconnect_failed", onFailed);
    s.on("connect_error", (err) => console.log(`socket: connect_error (${err?.message})`));
    s.on("error", (err) => console.error("socket: error", err));
    setSocket(s);
    return () => {
      // socket.io-client shares one Manager per URL between io() calls: leave it clean.
      s.io.off("reconnect_attempt", onAttempt);
      s.io.off("reconnect_failed", onFailed);
      s.disconnect();
    };
  }, []);

  const emit = useCallback(
    (event, data, ack) => {
      if (socket && socket.connected) {
        if (ack) socket.emit(event, data, ack);
        else socket.emit(event, data);
      } else console.warn(`socket: not connected, ${event} dropped`);
    },
    [socket],
  );

  const on = useCallback(
    (event, handler) => {
      if (!socket) return undefined;
      socket.on(event, handler);
      return () => socket.off(event, handler);
    },
    [socket],
  );

  return { socket, connected, emit, on, reconnectAttempts: attempts.current };
}
