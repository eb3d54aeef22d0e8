// A chat room component the way those apps write it (the shape of the seed's "Real-time Chat
// Implementation"): join the room on every connect, append incoming messages, show who is typing,
// and send with an optimistic update.
import React, { useEffect, useRef, useState } from "react";
import { useSocket } from "./useSocket.js";

const newId = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`);

export function ChatRoom({ roomId, currentUser }) {
  const [messages, setMessages] = useState([]);
  const [typing, setTyping] = useState([]);
  const [joined, setJoined] = useState(false);
  const [draft, setDraft] = useState("");
  const { socket, connected, emit, on } = useSocket();
  const typingSent = useRef(false);

  useEffect(() => {
    if (!socket) return undefined;
    // The server forgets a connection's rooms when it drops: join again on every connect.
    const join = () => socket.emit("room:join", roomId, () => setJoined(true));
    const left = () => setJoined(false);
    socket.on("connect", join);
    socket.on("disconnect", left);
    if (socket.connected) join();
    const offMessage = on("message:receive", (message) => {
      if (message.roomId !== roomId) return;
      setMessages((prev) => [...prev, message]);
    });
    const offTyping = on("typing:update", (users) => setTyping(users));
    return () => {
      socket.off("connect", join);
      socket.off("disconnect", left);
      offMessage?.();
      offTyping?.();
      if (socket.connected) socket.emit("room:leave", roomId);
    };
  }, [socket, roomId, on]);

  const stopTyping = () => {
    if (!typingSent.current) return;
    typingSent.current = false;
    emit("typing:stop", { roomId });
  };

  const onChange = (event) => {
    const text = event.target.value;
    setDraft(text);
    if (text && !typingSent.current) {
      typingSent.current = true;
      emit("typing:start", { roomId });
    } else if (!text) stopTyping();
  };

  const sendMessage = (event) => {
    event.preventDefault();
    const text = draft.trim();
    if (!text) return;
    const message = { id: newId(), text, roomId, userId: currentUser.id, timestamp: new Date().toISOString() };
    setMessages((prev) => [...prev, message]); // optimistic
    emit("message:send", message);
    stopTyping();
    setDraft("");
  };

  return (
    <div className="chat">
      <header>
        <span data-testid="status">{connected ? "connected" : "disconnected"}</span>
        {" · "}
        <span data-testid="room">{joined ? `in ${roomId}` : "not in a room"}</span>
        {!connected && socket && (
          <button data-testid="reconnect" onClick={() => socket.connect()}>
            Reconnect
          </button>
        )}
      </header>
      <ul data-testid="messages">
        {messages.map((m) => (
          <li key={m.id} data-user={m.userId}>
            <b>{m.userId}</b>: {m.text}
          </li>
        ))}
      </ul>
      <div data-testid="typing">{typing.length > 0 ? `${typing.join(", ")} typing…` : ""}</div>
      <form onSubmit={sendMessage}>
        <input data-testid="input" value={draft} onChange={onChange} placeholder="Message" />
        <button type="submit">Send</button>
      </form>
    </div>
  );
}
