class User < ApplicationRecord
  validates :name, presence: true
end
# change
# again
