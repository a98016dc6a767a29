import ArgumentParser

@main
struct BuddyPoolsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "buddypools",
        abstract: "Inspect the machine and the BUDDYPOOLS configuration of the BuddyPools allocator.",
        subcommands: [InfoCommand.self, CheckCommand.self, VerifyCommand.self],
        defaultSubcommand: InfoCommand.self)
}
