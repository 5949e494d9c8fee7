namespace ProxyBackup.Contracts;

/// <summary>
/// An error whose message is written for the operator: it says what is wrong and what to do, in one
/// line. The CLI, the console and the cleaner catch this one type and print the message; anything
/// else is a fault of the program (docs/operations.md, "Exit codes").
/// </summary>
public class UserFacingException(string message, Exception? inner = null) : Exception(message, inner);
